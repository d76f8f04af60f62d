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

from frame.callbacks.divergence import DivergenceError, DivergenceGuard
from frame.input_space import network_space
from frame.nets.vgg import CHECKPOINT_SOURCE

log = logging.getLogger(__name__)

# The frozen filter banks stay in eval mode on purpose; Lightning warns about that at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")

def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a config group such as ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(entry) for entry in cfg.values() if entry is not None and "_target_" in entry]

def build_model(model_cfg: DictConfig) -> pl.LightningModule:
    """The LightningModule of ``model_cfg``; its resolved config rides along into checkpoints,
    with no path of this machine in it (``self_contained``)."""
    model = hydra.utils.instantiate(model_cfg)
    model.model_config = self_contained(OmegaConf.to_container(model_cfg, resolve=True))
    return model

def self_contained(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every filter bank taking its weights from the checkpoint, not a source."""
    if isinstance(config, dict):
        config = {k: self_contained(v) for k, v in config.items()}
        if config.get("_target_", "").endswith("VGG16Features"):
            config["input_space"] = network_space(config.get("source", "caffe"), config.get("input_space")).name
            config["source"] = CHECKPOINT_SOURCE
            config.pop("cache_dir", None)
    elif isinstance(config, list):
        config = [self_contained(v) for v in config]
    return config

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

    On divergence, ``rollback.max_times`` > 0 resumes from the last good checkpoint this run
    wrote (``ModelCheckpoint.last_model_path``) with the Langevin step size and the learning
    rate multiplied by ``rollback.factor``, up to that many times; otherwise the error ends
    the run.
    """
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {cfg.ckpt_path}")
    rollback = cfg.get("rollback") or {}
    max_times, factor = int(rollback.get("max_times", 0)), float(rollback.get("factor", 0.5))
    ckpt_path, backoff = cfg.get("ckpt_path"), 1.0
    for attempt in range(max_times + 1):
        try:
            return fit(cfg, ckpt_path, backoff)
        except DivergenceError as err:
            if attempt == max_times or not err.last_good:
                raise
            backoff *= factor
            log.warning(
                "%s\nRolling back to %s with the Langevin step size and learning rate times %g (%d of %d).",
                err, err.last_good, backoff, attempt + 1, max_times,
            )
            ckpt_path = err.last_good
    raise AssertionError("unreachable")

def fit(cfg: DictConfig, ckpt_path: str | None, backoff: float = 1.0) -> dict[str, float]:
    """One ``Trainer.fit``; `backoff` multiplies the step size and the learning rate (rollbacks)."""
    pl.seed_everything(cfg.seed, workers=True)
    prepare_wandb(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg.model)
    if cfg.get("init_from"):
        init_layers(model, cfg.init_from)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    for callback in callbacks:
        if isinstance(callback, DivergenceGuard):
            callback.backoff = backoff
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except DivergenceError as err:
        err.last_good = getattr(trainer.checkpoint_callback, "last_model_path", None) or None
        raise
    finally:
        finish_wandb()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if metrics:
        log.info("final metrics: %s", metrics)
    return metrics

def init_layers(model: pl.LightningModule, ckpt_path: str) -> None:
    """Layer-by-layer growth (Section 7.3): the lowest layers of a net learned from scratch
    start from those of a shallower net's checkpoint (``init_from=...``, with
    ``model.energy.frozen_layers`` to keep them fixed). A resumed run's checkpoint then wins."""
    from frame.checkpoint import read_checkpoint  # here: frame.checkpoint imports this module

    if not hasattr(model.energy, "load_layers"):
        raise ValueError(f"init_from: {type(model.energy).__name__} has no layers learned from scratch to initialise")
    model.energy.load_layers(read_checkpoint(ckpt_path)["state_dict"])
