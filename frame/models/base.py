"""Algorithm 1 ("analysis by synthesis"), written once for every FRAME variant.

Each training step is one learning iteration t of Algorithm 1:

    1. observed statistics of the batch of training images (once per batch, no grad);
    5. L Langevin steps (eq. 16) on the persistent chains, warm-started from the last iteration;
    6. synthesized statistics of the chains;
    7. w <- w + gamma (H_obs - H_syn)   (eq. 13/14; eq. 21/27 for learned filters),
       done by the optimizer on ``Energy.contrastive_loss``, whose gradient is exactly that.

A variant (``NonStationaryFrame``, ``StationaryFrame``, ...) only chooses its energy and
defaults. The module logs ``train/gap_rel`` = ||H_obs - H_syn|| / ||H_obs|| (all layers and
per layer) and the mean f(I; w) of observed and synthesized images, and stops with a clear
message when the chains, energies or weights diverge.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import Tensor

from frame.buffer import ChainBuffer
from frame.energies.base import Energy
from frame.sampling import LangevinSampler

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
LR_SCALINGS = ("none", "obs_variance")


class DivergenceError(RuntimeError):
    """Raised when chains, energies or weights become non-finite or exceed their bound."""


class FrameModel(pl.LightningModule):
    """Learns the weights of an energy f(I; w) by Algorithm 1.

    Args:
        energy: the variant's f(I; w) (``frame.energies``).
        sampler: the Langevin sampler (eq. 16).
        n_chains: number of parallel chains n~ (16 in the paper's object experiments).
        canvas_size: side of the synthesized images (may exceed the data's for textures).
        chains: ``{"init": ..., "reinit_fraction": ...}`` for ``frame.buffer.ChainBuffer``.
        optimizer: a factory taking the parameters (Hydra ``_partial_``); plain SGD by default,
            which makes one step exactly eq. (13)/(14) with gamma = lr.
        scheduler: optional factory taking the optimizer (Hydra ``_partial_``), stepped every
            iteration (e.g. the paper's learning-rate decay of Section 9).
        lr_scaling: ``"none"`` or ``"obs_variance"`` (gamma inversely proportional to the
            observed variance of each statistic, Section 5.1).
        max_abs_energy: |mean f| beyond this counts as divergence.
        model_config: the config this module was built from (stored in checkpoints so that
            ``frame-sample`` can rebuild it).
    """

    def __init__(
        self,
        energy: Energy,
        sampler: LangevinSampler,
        n_chains: int = 16,
        canvas_size: int = 64,
        chains: dict[str, Any] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        lr_scaling: str = "none",
        max_abs_energy: float = 1e15,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"model.lr_scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
        if not int(canvas_size) >= 1:
            raise ValueError(f"model.canvas_size must be a positive integer, got {canvas_size}")
        self.energy = energy
        self.sampler = sampler
        self.buffer = ChainBuffer(n_chains, (3, int(canvas_size), int(canvas_size)), **(chains or {}))
        self.optimizer_factory = optimizer or (lambda params: torch.optim.SGD(params, lr=1e-4))
        self.scheduler_factory = scheduler
        self.lr_scaling = lr_scaling
        self.max_abs_energy = float(max_abs_energy)
        self.model_config = model_config
        self._lr_factors: dict[str, Tensor] | None = None
        self._generator: torch.Generator | None = None
        self._generator_state: dict[str, Any] | None = None

    # -- the image spaces --------------------------------------------------------------------
    def to_input(self, images: Tensor) -> Tensor:
        """User images (RGB, [0, 1]) -> the space the network and the chains live in."""
        return self.energy.preprocessing.to_input(images)

    def to_images(self, x: Tensor) -> Tensor:
        """Chains -> RGB images in [0, 1] (clamped), for display."""
        return self.energy.preprocessing.from_input(x.float()).clamp(0, 1)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.energy.preprocessing.input_bounds(x.device, x.dtype)

    def noise_generator(self, device: torch.device) -> torch.Generator:
        """The module's own random stream for the chains (noise, re-initialisation).

        Kept apart from torch's global generator (which data loading also draws from) and
        saved in checkpoints, so a resumed run draws exactly the noise the uninterrupted run
        would have drawn. Seeded from the run's seed and offset by the process rank.
        """
        if self._generator is None or self._generator.device.type != device.type:
            generator = torch.Generator(device=device)
            saved = self._generator_state
            if saved is not None and saved["device"] == device.type:
                generator.set_state(saved["state"])
            else:
                generator.manual_seed(torch.initial_seed() + 7919 * self.global_rank)
            self._generator = generator
        return self._generator

    # -- Algorithm 1 ---------------------------------------------------------------------------
    def synthesize(self, observed: Tensor) -> Tensor:
        """Steps 3 and 5: (re)initialise the chains and run L Langevin steps on them."""
        generator = self.noise_generator(observed.device)
        self.buffer.refresh(observed, self.to_input, generator)
        chains = self.sampler.sample(self.energy, self.buffer.chains, bounds=self.bounds(observed), generator=generator)
        self.buffer.update(chains)
        return chains

    def features(self, x: Tensor) -> dict[str, Tensor]:
        with self.sampler.autocast(x.device):
            return self.energy.features(self.sampler.prepare(x))

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        observed = self.to_input(batch)
        with torch.no_grad():
            feats_obs = self.features(observed)  # step 1: once per batch, no grad
        synthesized = self.synthesize(observed)
        feats_syn = self.features(synthesized)
        if self.lr_scaling == "obs_variance" and self._lr_factors is None:
            self._lr_factors = self.energy.variance_preconditioner(feats_obs)
        loss = self.energy.contrastive_loss(feats_obs, feats_syn)
        self.log_statistics(feats_obs, feats_syn, synthesized)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._lr_factors is not None:
            for layer, factor in self._lr_factors.items():
                weight = self.energy.weights[layer]
                if weight.grad is not None:
                    weight.grad.mul_(factor)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for name, param in self.energy.named_parameters():
            if param.requires_grad and not torch.isfinite(param).all():
                self.diverged(f"weights {name} became non-finite after the update")

    def configure_optimizers(self) -> Any:
        params = [p for p in self.energy.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- monitoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def log_statistics(self, feats_obs: dict[str, Tensor], feats_syn: dict[str, Tensor], chains: Tensor) -> None:
        """Logs the statistics gap |H_obs - H_syn| and the energies; checks for divergence."""
        h_obs = {k: v.float().mean(0) for k, v in self.energy.statistics(feats_obs).items()}
        h_syn = {k: v.float().mean(0) for k, v in self.energy.statistics(feats_syn).items()}
        metrics = {}
        gap_sq, obs_sq = 0.0, 0.0
        for layer in h_obs:
            diff = (h_obs[layer] - h_syn[layer]).norm() ** 2
            ref = h_obs[layer].norm() ** 2
            metrics[f"train/gap_rel/{layer}"] = (diff / ref.clamp_min(1e-12)).sqrt()
            gap_sq, obs_sq = gap_sq + diff, obs_sq + ref
        metrics["train/gap_rel"] = (gap_sq / obs_sq.clamp_min(1e-12)).sqrt()
        e_obs = sum(self.energy.layer_energies(feats_obs).values()).float().mean()
        e_syn = sum(self.energy.layer_energies(feats_syn).values()).float().mean()
        metrics["train/energy_obs"] = e_obs
        metrics["train/energy_syn"] = e_syn
        self.check_finite(chains, h_syn, e_syn)
        self.log("train/gap_rel", metrics.pop("train/gap_rel"), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict(metrics, on_step=True, on_epoch=False)

    def check_finite(self, chains: Tensor, h_syn: dict[str, Tensor], e_syn: Tensor) -> None:
        """Divergence guard: one host sync per iteration, only for the verdict."""
        if not torch.isfinite(chains).all():
            self.diverged("the Langevin chains became non-finite (NaN/Inf)")
        for layer, h in h_syn.items():
            if not torch.isfinite(h).all():
                self.diverged(f"the synthesized statistics at layer {layer} became non-finite")
        if not torch.isfinite(e_syn) or e_syn.abs() > self.max_abs_energy:
            self.diverged(f"the mean energy f(I~) of the chains is {e_syn.item():.3g} (bound {self.max_abs_energy:.3g})")

    def diverged(self, what: str) -> None:
        raise DivergenceError(
            f"Divergence at step {self.global_step}: {what}. Lower the learning rate "
            f"(model.optimizer.lr), the Langevin step size (model.sampler.step_size={self.sampler.step_size}) "
            f"or the number of steps (model.sampler.n_steps={self.sampler.n_steps}), or raise "
            f"sigma (model.sampler.sigma={self.sampler.sigma})."
        )

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["frame"] = {"variant": type(self).__name__, "model_config": self.model_config}
        if self._generator is not None:
            checkpoint["frame"]["noise_generator"] = {
                "device": self._generator.device.type,
                "state": self._generator.get_state(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("frame", {}).get("variant")
        if saved is not None and saved != type(self).__name__:
            raise ValueError(
                f"this checkpoint holds a {saved} model but the run builds a {type(self).__name__}: "
                "pass the same model=... as the run that wrote it"
            )
        self._generator_state = checkpoint.get("frame", {}).get("noise_generator")
        self._generator = None
