"""Runs Algorithm 1 from a composed Hydra config: build -> fit, and the rollback loop.

``train`` retries a diverged run from its last good checkpoint (``rollback``); ``fit`` is one
``Trainer.fit`` with the run's checkpoint IO, signal stopping and checks before resuming.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from frame.buffer import ChainBuffer
from frame.run.build import build_model, instantiate_group, prepare_data
from frame.run.checkpoint_header import CheckpointHeader
from frame.run.checkpoint_io import AtomicCheckpointIO
from frame.run.checkpoints import check_new_folder, check_resumable, read_checkpoint, requeued_checkpoint
from frame.run.divergence import DivergenceError, DivergenceGuard
from frame.run.folder import claim
from frame.run.precondition import Precondition
from frame.run.signals import StopOnSignal

log = logging.getLogger(__name__)

# The frozen filter banks stay in eval mode on purpose; Lightning warns about that at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")

def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raises ``ValueError`` naming the config `key` unless `ok`."""
    if not ok:
        raise ValueError(f"{key} must be {expected}, got {value!r}")

def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)

def check_trainer(trainer_cfg: DictConfig) -> None:
    """The Trainer's settings that its own checks would not name the key of (or not refuse)."""
    steps, epochs = trainer_cfg.get("max_steps", -1), trainer_cfg.get("max_epochs")
    require(is_int(steps) and (steps >= 1 or steps == -1), "trainer.max_steps", "an integer >= 1 (or -1: no limit)", steps)
    require(epochs is None or is_int(epochs) and (epochs >= 1 or epochs == -1), "trainer.max_epochs", "an integer >= 1, -1 or null", epochs)
    for key in ("log_every_n_steps", "accumulate_grad_batches"):
        value = trainer_cfg.get(key, 1)
        require(is_int(value) and value >= 1, f"trainer.{key}", "an integer >= 1", value)

def prepare_wandb(cfg: DictConfig) -> None:
    """W&B never waits for a network by default: offline unless the user asks otherwise."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None and wandb_cfg.get("offline", True):
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")

def finish_wandb() -> None:
    """Closes the W&B run so that the next job of a Hydra multirun starts its own."""
    wandb = sys.modules.get("wandb")  # never imported: no run to close (importing it costs a second)
    if wandb is not None and wandb.run is not None:
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
    max_times, factor = rollback.get("max_times", 0), rollback.get("factor", 0.5)
    require(is_int(max_times) and max_times >= 0, "rollback.max_times", "an integer >= 0", max_times)
    require(isinstance(factor, (int, float)) and not isinstance(factor, bool) and 0 < factor < 1, "rollback.factor",
            "a number in (0, 1)", factor)
    ckpt_path, backoff = cfg.get("ckpt_path"), 1.0
    for attempt in range(max_times + 1):
        try:
            return fit(cfg, ckpt_path, backoff, new_run=attempt == 0)
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

def backed_off(model_cfg: DictConfig, backoff: float) -> DictConfig:
    """The model config of a rolled-back attempt: the Langevin step size times `backoff` (the
    learning rate follows in ``DivergenceGuard``, in the optimizer the checkpoint restores)."""
    if backoff == 1.0:
        return model_cfg
    model_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    model_cfg.sampler.step_size = float(model_cfg.sampler.step_size) * backoff
    return model_cfg

def fit(cfg: DictConfig, ckpt_path: str | None, backoff: float = 1.0, new_run: bool = True) -> dict[str, float]:
    """One ``Trainer.fit``; `backoff` multiplies the step size and the learning rate (rollbacks).

    A checkpoint to resume from is read safely and checked against the model first
    (``frame.run.checkpoints.read_checkpoint``): Lightning only loads one that passed. A `new_run`
    refuses a checkpoint folder that already holds another run's checkpoints.
    """
    require(is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "seed", "an integer in [0, 2**32)", cfg.seed)
    if (folder := OmegaConf.select(cfg, "trainer.default_root_dir")) is not None:
        claim(Path(folder), "paths.output_dir")  # train() called without train.py's Hydra callback
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None
    check_trainer(cfg.trainer)
    pl.seed_everything(cfg.seed, workers=True)
    prepare_wandb(cfg)
    datamodule = prepare_data(cfg)
    model = build_model(backed_off(cfg.model, backoff))
    if checkpoint is not None:
        check_resumable(model, checkpoint, ckpt_path)
    if cfg.get("init_from"):
        init_layers(model, cfg.init_from)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    for callback in callbacks:
        if isinstance(callback, DivergenceGuard):
            callback.backoff = backoff
    if not loggers:  # logger=none: nothing to monitor the learning rate into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    stop = StopOnSignal()
    precondition = Precondition(cfg.model.get("precondition", "none"))
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=loggers or False, callbacks=[*callbacks, precondition, stop, CheckpointHeader()], plugins=plugins(cfg.trainer),
    )
    if ckpt_path is None and (requeued := requeued_checkpoint(trainer)):  # a Slurm job requeued into its folder
        check_resumable(model, read_checkpoint(requeued), requeued)
        ckpt_path = requeued  # the one Lightning would pick, now checked
    if new_run:
        check_new_folder(trainer, ckpt_path)
    if isinstance(buffer := getattr(model, "buffer", None), ChainBuffer):
        buffer.check_shares(trainer.num_nodes * trainer.num_devices)  # before any process is started
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except DivergenceError as err:
        err.last_good = getattr(trainer.checkpoint_callback, "last_model_path", None) or ckpt_path or None
        raise
    except (SIGTERMException, SystemExit):  # a signal, or Lightning's exit after a second Ctrl+C
        if stop.signal is None:
            raise
        raise stop.interrupted(trainer) from None
    finally:
        finish_wandb()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if metrics:
        log.info("final metrics: %s", metrics)
    last = getattr(trainer.checkpoint_callback, "last_model_path", None)
    if last:
        log.info("checkpoint: %s (resume with ckpt_path=%s)", last, last)
    return metrics

def plugins(trainer_cfg: DictConfig) -> list[Any]:
    """The configured ``trainer.plugins`` and, unless one is configured, atomic checkpoint writes."""
    configured = trainer_cfg.get("plugins") or []
    if isinstance(configured, DictConfig):
        configured = [configured]
    built = [hydra.utils.instantiate(p) if isinstance(p, DictConfig) else p for p in configured]
    if not any(isinstance(p, CheckpointIO) for p in built):
        built.append(AtomicCheckpointIO())
    return built

def init_layers(model: pl.LightningModule, ckpt_path: str) -> None:
    """Layer-by-layer growth (Section 7.3): the lowest layers of a net learned from scratch
    start from those of a shallower net's checkpoint (``init_from=...``, with
    ``model.energy.frozen_layers`` to keep them fixed). A resumed run's checkpoint then wins."""
    if not hasattr(model.energy, "load_layers"):
        raise ValueError(f"init_from: {type(model.energy).__name__} has no layers learned from scratch to initialise")
    model.energy.load_layers(read_checkpoint(ckpt_path)["state_dict"])
