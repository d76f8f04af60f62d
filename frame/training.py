"""Builds everything a run needs from a composed Hydra config and runs Algorithm 1."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from frame.models.base import DivergenceError

log = logging.getLogger(__name__)

# The frozen filter banks stay in eval mode on purpose; Lightning warns about that at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a config group such as ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(entry) for entry in cfg.values() if entry is not None and "_target_" in entry]


def build_model(model_cfg: DictConfig) -> pl.LightningModule:
    """The LightningModule of ``model_cfg``; the resolved config rides along into checkpoints."""
    model = hydra.utils.instantiate(model_cfg)
    model.model_config = OmegaConf.to_container(model_cfg, resolve=True)
    return model


def prepare_wandb(cfg: DictConfig) -> None:
    """W&B never waits for a network by default: offline unless the user asks otherwise."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None and wandb_cfg.get("offline", True):
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def finish_wandb() -> None:
    """Closes the W&B run so that the next job of a Hydra multirun starts its own."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits the configured model; returns the last logged metrics (for sweeps and tests).

    On divergence, ``rollback.max_times`` > 0 resumes from the last good checkpoint
    (``last.ckpt``) with the Langevin step size and the learning rate multiplied by
    ``rollback.factor``, up to that many times; otherwise the error ends the run.
    """
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {cfg.ckpt_path}")
    rollback = cfg.get("rollback") or {}
    max_times, factor = int(rollback.get("max_times", 0)), float(rollback.get("factor", 0.5))
    ckpt_path, scale = cfg.get("ckpt_path"), 1.0
    for attempt in range(max_times + 1):
        try:
            return fit(cfg, ckpt_path, scale)
        except DivergenceError as err:
            last_good = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
            if attempt == max_times or not last_good.is_file():
                raise
            scale *= factor
            log.warning(
                "%s\nRolling back to %s with the Langevin step size and learning rate times %g (%d of %d).",
                err, last_good, scale, attempt + 1, max_times,
            )
            ckpt_path = str(last_good)
    raise AssertionError("unreachable")


def fit(cfg: DictConfig, ckpt_path: str | None, scale: float = 1.0) -> dict[str, float]:
    """One ``Trainer.fit``; `scale` multiplies the step size and the learning rate (rollbacks)."""
    pl.seed_everything(cfg.seed, workers=True)
    prepare_wandb(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg.model)
    model.sampler.step_size *= scale
    model.lr_scale = scale
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    finally:
        finish_wandb()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if metrics:
        log.info("final metrics: %s", metrics)
    return metrics
