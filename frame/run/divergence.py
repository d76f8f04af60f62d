"""Stops a run whose chains, energies or weights diverge, and backs a rolled-back run off.

EBMs diverge when the Langevin step, the learning rate or the number of steps is too large:
the chains or weights turn NaN/Inf, or the energy of the synthesized images runs away. They
also diverge slowly, with every number finite: a layer's statistics gap climbs back far above
the best it reached, or the mean energies of observed and synthesized images drift apart
(the synthesized images leave the data while the weights chase them). The guard counts the
steps a layer spends in such a state and stops the run after ``patience`` of them in a row.
It watches running means over ``window`` steps, so that a single low value (a gap that dips
for one step while the first chains pass through the data's statistics) does not become the
best that the rest of a healthy run is held against.
It checks after every optimizer step (Lightning runs user callbacks before
``ModelCheckpoint``, so the bad weights never reach ``last.ckpt``), writes a diagnostic
checkpoint and raises ``DivergenceError`` naming the layer and the quantity.

A rollback (``frame.run.fit.train`` with ``rollback.max_times`` > 0) resumes from the last
good checkpoint with ``backoff`` < 1: the Langevin step size and the learning rate are
multiplied by it (the step size in the config, before the sampler is built; the learning rate
here, in the optimizer the checkpoint restores). The backoff is saved in checkpoints, so a
second rollback compounds correctly from a checkpoint written after the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

#: a mean cosine of consecutive Langevin drifts below this (``train/langevin/drift_cos``) is named
#: in the message: the chains chatter across the kinks of f (``frame.sampling.DriftTrace``)
CHATTER_COS = -0.5


class DivergenceError(RuntimeError):
    """Raised when chains, energies or weights become non-finite or exceed their bound."""

    #: the last good checkpoint the diverged run wrote (``frame.run.fit.fit`` sets it)
    last_good: str | None = None


class DivergenceGuard(pl.Callback):
    """Raises ``DivergenceError`` (after a diagnostic checkpoint) when a run diverges.

    Args:
        max_abs_energy: |mean f_l| of a layer beyond this counts as divergence.
        climb: slow divergence: a layer's gap_rel above ``climb`` times its running minimum
            (and above ``min_gap``), or the energy spread |f_obs - f_syn| / max(|f_obs|, |f_syn|)
            of f over all layers above ``climb`` times its running minimum (and above 0.5) ...
        patience: ... for this many steps in a row (0 turns the slow check off).
        min_gap: gap_rel values below this never count as climbing.
        window: the slow check compares running means of this many steps (the value and its
            minimum); nothing counts before the first window is full. 1 = the raw values.
        backoff: multiplies the learning rate (set by rollbacks, which multiply the configured
            Langevin step size by it too).
    """

    def __init__(
        self,
        max_abs_energy: float = 1e15,
        climb: float = 2.0,
        patience: int = 25,
        min_gap: float = 0.1,
        window: int = 10,
        backoff: float = 1.0,
    ) -> None:
        if not max_abs_energy > 0:
            raise ValueError(f"callbacks.divergence_guard.max_abs_energy must be > 0, got {max_abs_energy}")
        if not climb > 1:
            raise ValueError(f"callbacks.divergence_guard.climb must be > 1, got {climb}")
        if int(patience) != patience or patience < 0:
            raise ValueError(f"callbacks.divergence_guard.patience must be an integer >= 0, got {patience}")
        if int(window) != window or window < 1:
            raise ValueError(f"callbacks.divergence_guard.window must be an integer >= 1, got {window}")
        self.max_abs_energy = float(max_abs_energy)
        self.climb, self.patience, self.min_gap = float(climb), int(patience), float(min_gap)
        self.window = int(window)
        self.backoff = float(backoff)
        self._restored_backoff = 1.0
        #: per watched quantity: its last ``window`` values, the minimum of their running mean and
        #: the steps it has spent above the bound
        self.recent: dict[str, list[float]] = {}
        self.minimum: dict[str, float] = {}
        self.streak: dict[str, int] = {}

    # -- the check -----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        problems = self.problems(trainer.callback_metrics, pl_module)
        bad = trainer.strategy.reduce_boolean_decision(bool(problems), all=False)
        if not bad:
            return
        sampler = pl_module.sampler
        message = (
            f"Divergence at step {trainer.global_step}: {'; '.join(problems) or 'reported by another process'}.{self.chatter(trainer.callback_metrics)} "
            f"Lower the learning rate (model.optimizer.lr), the Langevin step size (model.sampler.step_size, now "
            f"{sampler.step_size}) or the number of steps (model.sampler.n_steps, now {sampler.n_steps}), or raise "
            f"sigma (model.sampler.sigma, now {sampler.sigma})."
        )
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        path = Path(folder) / f"diverged_step{trainer.global_step:06d}.ckpt"
        trainer.save_checkpoint(path)
        # Lightning hands a step's metrics to the loggers after the callbacks: without this the
        # row of the step that tripped the guard would be missing from the run's history
        row = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("train/")}
        for logger in trainer.loggers:
            logger.log_metrics(row, step=trainer.global_step - 1)  # the row Lightning gives the step's metrics
        raise DivergenceError(f"{message} Diagnostic checkpoint: {path}; the last good one is left untouched.")

    def problems(self, metrics: dict[str, torch.Tensor], pl_module: Any) -> list[str]:
        """What diverged, from the step's logged statistics, the chains and the weights."""
        found = []
        if not torch.isfinite(pl_module.buffer.chains).all():
            found.append("the Langevin chains became non-finite (NaN/Inf)")
        for key, value in metrics.items():
            layer = key.rsplit("/", 1)[-1]
            if key.startswith("train/gap_rel/") and not torch.isfinite(value):
                found.append(f"the synthesized statistics at layer {layer} became non-finite")
            if key.startswith("train/energy_syn/") and not (torch.isfinite(value) and value.abs() <= self.max_abs_energy):
                found.append(
                    f"the mean energy f_l(I~) at layer {layer} is {value.item():.3g} "
                    f"(bound callbacks.divergence_guard.max_abs_energy={self.max_abs_energy:.3g})"
                )
        bad = [name for name, p in pl_module.energy.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            found.append(f"the weights {', '.join(bad)} became non-finite after the update")
        return found or self.slow_divergence(metrics)

    def slow_divergence(self, metrics: dict[str, torch.Tensor]) -> list[str]:
        """Layers whose gap or energy spread has stayed far above its best for ``patience`` steps."""
        if not self.patience:
            return []
        # (what is tracked, the layer named, its value, the floor below which it never counts, what it is)
        watched = [(key, key.rsplit("/", 1)[-1], float(value), self.min_gap, "gap_rel")
                   for key, value in metrics.items() if key.startswith("train/gap_rel/")]
        # the energies of all layers together: one layer's f_l may cross zero on its way (its
        # weights take both signs); the model's f must not run away from the data's
        e_obs, e_syn = (float(metrics.get(f"train/energy_{side}", 0.0)) for side in ("obs", "syn"))
        if e_obs != 0.0 or e_syn != 0.0:  # both 0: the weights are still at 0 (Algorithm 1, step 2)
            spread = abs(e_obs - e_syn) / max(abs(e_obs), abs(e_syn))
            what = "energy spread |f_obs - f_syn| / max(|f_obs|, |f_syn|) (all layers; this one moved most)"
            watched.append(("energy_spread", self.moved_most(metrics), spread, 0.5, what))
        found = []
        for key, layer, value, floor, what in watched:
            recent = self.recent[key] = (self.recent.get(key, []) + [value])[-self.window:]
            if len(recent) < self.window:
                continue
            value = sum(recent) / self.window
            best = self.minimum[key] = min(self.minimum.get(key, value), value)
            climbing = value > max(self.climb * best, floor)
            self.streak[key] = self.streak.get(key, 0) + 1 if climbing else 0
            if self.streak[key] >= self.patience:
                mean = f"{self.window}-step mean of its " if self.window > 1 else ""
                found.append(
                    f"slow divergence at layer {layer}: the {mean}{what} has been above {self.climb:g} x its best "
                    f"({best:.3g}) for {self.streak[key]} steps, now {value:.3g} "
                    f"(callbacks.divergence_guard.climb / patience / window)"
                )
        return found

    @staticmethod
    def chatter(metrics: dict[str, torch.Tensor]) -> str:
        """A sentence for the message when the last Langevin steps chattered, else ''."""
        cos, move = metrics.get("train/langevin/drift_cos"), metrics.get("train/langevin/move_rms")
        if cos is None or not float(cos) < CHATTER_COS:
            return ""
        hops = f", hopping {float(move):.3g} a value a step" if move is not None else ""
        return (
            f" The chains chatter: consecutive Langevin drifts point in opposite directions (train/langevin/drift_cos "
            f"{float(cos):.2f}{hops}); the hops shrink as the step size squared."
        )

    @staticmethod
    def moved_most(metrics: dict[str, torch.Tensor]) -> str:
        """The layer whose |f_obs,l - f_syn,l| is largest."""
        spreads = {}
        for key, value in metrics.items():
            if key.startswith("train/energy_obs/"):
                layer = key.rsplit("/", 1)[-1]
                spreads[layer] = abs(float(value) - float(metrics.get(f"train/energy_syn/{layer}", value)))
        return max(spreads, key=spreads.get) if spreads else "all"

    # -- rollback ------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # the restored optimizer holds the rate of the run that wrote the checkpoint
        change = self.backoff / self._restored_backoff
        if change != 1.0:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= change
            for config in trainer.lr_scheduler_configs:
                config.scheduler.base_lrs = [lr * change for lr in config.scheduler.base_lrs]
        self._restored_backoff = self.backoff

    def state_dict(self) -> dict[str, Any]:
        return {
            "backoff": self.backoff,
            "recent": {key: list(values) for key, values in self.recent.items()},
            "minimum": dict(self.minimum),
            "streak": dict(self.streak),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_backoff = float(state_dict.get("backoff", 1.0))
        self.recent = {key: [float(v) for v in values] for key, values in state_dict.get("recent", {}).items()}
        self.minimum = dict(state_dict.get("minimum", {}))
        self.streak = dict(state_dict.get("streak", {}))
