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

import inspect
import random
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

import pytorch_lightning as pl
import torch
from torch import Tensor

from frame.buffer import ChainBuffer
from frame.energies.base import Energy
from frame.masks import RecoveryMasks, start_chains
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
        recovery: ``None`` (off), or ``{"mask_size": ..., "n_masks": ..., "placement": ...}``
            (``frame.masks.RecoveryMasks``) to train for image recovery (Section 9): each
            iteration every training image gets random square holes and its chain samples
            p(I_M | I_notM; w) from it, so ``n_chains`` must equal the batch size.
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
        recovery: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if lr_scaling not in LR_SCALINGS:
            raise ValueError(f"model.lr_scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
        if lr_scaling == "obs_variance" and not hasattr(energy, "variance_preconditioner"):
            raise ValueError(f"model.lr_scaling=obs_variance needs an energy linear in w; {type(energy).__name__} is not")
        if not int(canvas_size) >= 1:
            raise ValueError(f"model.canvas_size must be a positive integer, got {canvas_size}")
        self.energy = energy
        self.sampler = sampler
        self.buffer = ChainBuffer(n_chains, (3, int(canvas_size), int(canvas_size)), **(chains or {}))
        self.optimizer_factory = optimizer or (lambda params: torch.optim.SGD(params, lr=1e-4))
        self.scheduler_factory = scheduler
        self.lr_scaling = lr_scaling
        self.max_abs_energy = float(max_abs_energy)
        #: the resolved config this module was built from (``frame.training.build_model`` sets
        #: it); stored in checkpoints so that ``frame-sample`` and friends can rebuild the model
        self.model_config: dict[str, Any] | None = None
        self.recovery = RecoveryMasks.from_config(recovery)
        self._lr_factors: dict[str, Tensor] | None = None
        self._generator: torch.Generator | None = None
        self._generator_state: dict[str, Any] | None = None
        #: learning-rate multiplier set by a divergence rollback (frame.training.train)
        self.lr_scale = 1.0
        self._saved_lr_scale = 1.0

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
        would have drawn. Seeded from the run's seed; every process holds the same stream and
        keeps the rows of its own chains (``frame.sampling.draw_noise``).
        """
        if self._generator is None or self._generator.device.type != device.type:
            generator = torch.Generator(device=device)
            saved = self._generator_state
            if saved is not None and saved["device"] == device.type:
                generator.set_state(saved["state"])
            else:
                generator.manual_seed(torch.initial_seed())
            self._generator = generator
        return self._generator

    # -- Algorithm 1 ---------------------------------------------------------------------------
    def synthesize(self, observed: Tensor) -> Tensor:
        """Steps 3 and 5: (re)initialise the chains and run L Langevin steps on them."""
        generator = self.noise_generator(observed.device)
        if self.recovery is not None:
            return self.synthesize_recovery(observed, generator)
        self.buffer.refresh(observed, self.energy.preprocessing, generator)
        offset, size = self.chain_shard()
        chains = self.sampler.sample(
            self.energy, self.buffer.chains[offset : offset + size], bounds=self.bounds(observed),
            generator=generator, rows=(offset, self.buffer.n_chains),
        )
        # every process keeps the whole buffer (so checkpoints hold all chains)
        self.buffer.update(self.all_gather(chains).reshape(self.buffer.chains.shape) if self.world_size > 1 else chains)
        return chains

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def chain_shard(self) -> tuple[int, int]:
        """(first chain, number of chains) this process runs; all of them in one process."""
        size = self.buffer.n_chains // self.world_size
        return self.global_rank * size, size

    def setup(self, stage: str) -> None:
        if self.recovery is None and self.buffer.n_chains % self.world_size:
            raise ValueError(
                f"model.n_chains={self.buffer.n_chains} does not divide by the {self.world_size} processes "
                "of this run: each process runs an equal share of the chains"
            )

    def synthesize_recovery(self, observed: Tensor, generator: torch.Generator) -> Tensor:
        """Training for recovery (Section 9): the chains are this batch's images with random
        square holes (filled with the image's mean), and only the holes move, so the model
        learns p(I_M | I_notM; w). A cold start every iteration; masks come from the module's
        own generator, so a resumed run draws the same ones."""
        if tuple(observed.shape) != tuple(self.buffer.chains.shape):
            raise ValueError(
                f"model.recovery: the chains are the masked training images, so the chain buffer "
                f"{tuple(self.buffer.chains.shape)} must match the batch {tuple(observed.shape)}: "
                f"set model.n_chains to the batch size (data.batch_size, or the number of images) "
                f"and model.canvas_size to data.image_size"
            )
        # every process holds the same generator: draw masks and noise for the images of all
        # processes and keep this process's rows, so that the processes' masks differ
        n = observed.shape[0]
        rows = (self.global_rank * n, self.world_size * n)
        missing = self.recovery.sample(rows[1], observed.shape[-2:], generator, observed.device)[rows[0] : rows[0] + n]
        start = start_chains(observed.float(), missing, self.recovery.start, self.energy.preprocessing)
        chains = self.sampler.sample(
            self.energy, start, mask=missing, bounds=self.bounds(observed), generator=generator, rows=rows
        )
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

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # checked here, before the callbacks' on_train_batch_end can checkpoint bad weights
        bad = [name for name, p in self.energy.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        self.guard(bool(bad), lambda: f"the weights {', '.join(bad)} became non-finite after the update")

    def on_train_start(self) -> None:
        # a rollback resumes with a smaller rate than the checkpointed optimizer holds
        change = self.lr_scale / self._saved_lr_scale
        if change != 1.0:
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= change
            for config in self.trainer.lr_scheduler_configs:
                config.scheduler.base_lrs = [lr * change for lr in config.scheduler.base_lrs]
        self._saved_lr_scale = self.lr_scale

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
        h_obs = {k: self.mean_over_processes(v.float().mean(0)) for k, v in self.energy.statistics(feats_obs).items()}
        h_syn = {k: self.mean_over_processes(v.float().mean(0)) for k, v in self.energy.statistics(feats_syn).items()}
        metrics = {}
        gap_sq, obs_sq = 0.0, 0.0
        for layer in h_obs:
            diff = (h_obs[layer] - h_syn[layer]).norm() ** 2
            ref = h_obs[layer].norm() ** 2
            metrics[f"train/gap_rel/{layer}"] = (diff / ref.clamp_min(1e-12)).sqrt()
            gap_sq, obs_sq = gap_sq + diff, obs_sq + ref
        metrics["train/gap_rel"] = (gap_sq / obs_sq.clamp_min(1e-12)).sqrt()
        e_obs = {k: self.mean_over_processes(v.float().mean()) for k, v in self.energy.layer_energies(feats_obs).items()}
        e_syn = {k: self.mean_over_processes(v.float().mean()) for k, v in self.energy.layer_energies(feats_syn).items()}
        metrics["train/energy_obs"] = sum(e_obs.values())
        metrics["train/energy_syn"] = sum(e_syn.values())
        self.check_finite(chains, h_syn, e_syn)
        self.log("train/gap_rel", metrics.pop("train/gap_rel"), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict(metrics, on_step=True, on_epoch=False)

    def mean_over_processes(self, value: Tensor) -> Tensor:
        """The mean over all processes (identity in a single process)."""
        if self._trainer is None or self.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    def check_finite(self, chains: Tensor, h_syn: dict[str, Tensor], e_syn: dict[str, Tensor]) -> None:
        """Divergence guard on the chains, the statistics and the energy of every layer."""
        problems = []
        if not torch.isfinite(chains).all():
            problems.append("the Langevin chains became non-finite (NaN/Inf)")
        for layer, h in h_syn.items():
            if not torch.isfinite(h).all():
                problems.append(f"the synthesized statistics at layer {layer} became non-finite")
        for layer, e in e_syn.items():
            if not torch.isfinite(e) or e.abs() > self.max_abs_energy:
                problems.append(
                    f"the mean energy f_l(I~) at layer {layer} is {e.item():.3g} "
                    f"(bound model.max_abs_energy={self.max_abs_energy:.3g})"
                )
        self.guard(bool(problems), lambda: "; ".join(problems))

    def guard(self, bad: bool, what: Callable[[], str]) -> None:
        """Stops every process when any of them sees a divergence, after a diagnostic checkpoint."""
        if self._trainer is not None and self.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        message = (
            f"Divergence at step {self.global_step}: {what() or 'reported by another process'}. Lower the "
            f"learning rate (model.optimizer.lr), the Langevin step size (model.sampler.step_size="
            f"{self.sampler.step_size}) or the number of steps (model.sampler.n_steps={self.sampler.n_steps}), "
            f"or raise sigma (model.sampler.sigma={self.sampler.sigma})."
        )
        if self._trainer is not None:
            path = Path(self.trainer.default_root_dir) / "checkpoints" / f"diverged_step{self.global_step:06d}.ckpt"
            self.trainer.save_checkpoint(path)
            message += f" Diagnostic checkpoint: {path}; the last good one is left untouched."
        raise DivergenceError(message)

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["frame"] = {"variant": type(self).__name__, "model_config": self.model_config}
        checkpoint["frame"]["rng"] = rng_states()
        checkpoint["frame"]["lr_scale"] = self.lr_scale
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
        self._saved_lr_scale = checkpoint.get("frame", {}).get("lr_scale", 1.0)
        if "rng" in checkpoint.get("frame", {}):
            set_rng_states(checkpoint["frame"]["rng"])
        self._generator_state = checkpoint.get("frame", {}).get("noise_generator")
        self._generator = None


def split_options(energy_class: type, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the options that ``energy_class``'s constructor takes, the others for ``FrameModel``).

    A variant's config lists its energy's options next to the base model's (sampler, chains,
    optimizer, ...); this keeps the variant from repeating its energy's signature.
    """
    names = set(inspect.signature(energy_class.__init__).parameters) - {"self"}
    return {k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names}


def rng_states() -> dict[str, Any]:
    """torch, numpy and python random states, in types a ``weights_only`` load accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
