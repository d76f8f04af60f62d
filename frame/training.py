"""Builds everything a run needs from a composed Hydra config and runs Algorithm 1."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from frame.callbacks.checkpointing import AtomicCheckpointIO, StopOnSignal, checkpoint_folder, requeued_checkpoint
from frame.callbacks.divergence import DivergenceError, DivergenceGuard
from frame.input_space import network_space
from frame.nets.vgg import CHECKPOINT_SOURCE
from frame.run_folder import claim

log = logging.getLogger(__name__)

# The frozen filter banks stay in eval mode on purpose; Lightning warns about that at fit start.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# run folders end in the process id (conf/hydra/default.yaml): two runs started in the same
# microsecond on one machine still get two folders
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)

def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)

def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

#: numeric keys with a valid range, checked before anything is built: (key, test, what it must be)
RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    ("trainer.max_steps", lambda v: _int(v) and (v >= 1 or v == -1), "an integer >= 1 (or -1: no limit)"),
    ("trainer.max_epochs", lambda v: v is None or _int(v) and (v >= 1 or v == -1), "an integer >= 1, -1 or null"),
    ("trainer.log_every_n_steps", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("trainer.accumulate_grad_batches", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("model.image_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("model.canvas_size", lambda v: v is None or _int(v) and v >= 1, "an integer >= 1 or null"),
    ("model.sampler.n_steps", lambda v: _int(v) and v >= 1, "an integer >= 1 (Langevin steps per learning iteration)"),
    ("model.sampler.step_size", lambda v: _real(v) and v > 0, "a number > 0"),
    ("model.sampler.sigma", lambda v: _real(v) and v > 0, "a number > 0"),
    ("model.buffer.n_chains", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("model.buffer.reinit_fraction", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    ("model.optimizer.lr", lambda v: _real(v) and v > 0, "a number > 0"),
    ("model.optimizer.momentum", lambda v: _real(v) and v >= 0, "a number >= 0"),
    ("model.optimizer.weight_decay", lambda v: _real(v) and v >= 0, "a number >= 0"),
    ("data.image_size", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("data.batch_size", lambda v: v is None or _int(v) and v >= 1, "an integer >= 1 or null (every image)"),
    ("data.steps_per_epoch", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("data.num_workers", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("callbacks.model_checkpoint.every_n_train_steps", lambda v: v is None or _int(v) and v >= 0, "an integer >= 0"),
    ("callbacks.model_checkpoint.save_top_k", lambda v: _int(v) and v >= -1, "an integer >= -1"),
    ("callbacks.sample_grid.every_n_steps", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("callbacks.sample_grid.max_images", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("callbacks.divergence_guard.max_abs_energy", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
     "a number > 0"),
    ("rollback.max_times", lambda v: _int(v) and v >= 0, "an integer >= 0"),
    ("rollback.factor", lambda v: _real(v) and 0 < v < 1, "a number in (0, 1)"),
)
_ABSENT = object()

def check_ranges(cfg: DictConfig) -> None:
    """Raises ``ValueError`` naming the first key of ``RANGES`` whose value is out of range."""
    for key, valid, expected in RANGES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not valid(value):
            raise ValueError(f"{key} must be {expected}, got {value!r}")

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

def prepare_data(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module; ``data.grayscale=auto`` becomes true or false from the images, before
    the model is built, so that grey images (R = G = B) give grey chains (``${data.grayscale}``
    in the model config)."""
    datamodule = hydra.utils.instantiate(cfg.data)
    if cfg.data.get("grayscale") == "auto":
        datamodule.setup("fit")
        cfg.data.grayscale = datamodule.grayscale
    return datamodule


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
    check_ranges(cfg)
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {cfg.ckpt_path}")
    rollback = cfg.get("rollback") or {}
    max_times, factor = int(rollback.get("max_times", 0)), float(rollback.get("factor", 0.5))
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

def fit(cfg: DictConfig, ckpt_path: str | None, backoff: float = 1.0, new_run: bool = True) -> dict[str, float]:
    """One ``Trainer.fit``; `backoff` multiplies the step size and the learning rate (rollbacks).

    A checkpoint to resume from is read safely and checked against the model first
    (``frame.checkpoint.read_checkpoint``): Lightning only loads one that passed. A `new_run`
    refuses a checkpoint folder that already holds another run's checkpoints.
    """
    from frame.checkpoint import check_finite, check_random_states, read_checkpoint  # frame.checkpoint imports this module

    if (folder := OmegaConf.select(cfg, "trainer.default_root_dir")) is not None:
        claim(Path(folder), "paths.output_dir")  # train() called without train.py's Hydra callback
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None
    if checkpoint is not None:
        check_finite(checkpoint, ckpt_path)
        check_random_states(checkpoint, ckpt_path)
    pl.seed_everything(cfg.seed, workers=True)
    prepare_wandb(cfg)
    datamodule = prepare_data(cfg)
    model = build_model(cfg.model)
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
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=loggers or False, callbacks=[*callbacks, stop], plugins=plugins(cfg.trainer),
    )
    if ckpt_path is None and (requeued := requeued_checkpoint(trainer)):  # a Slurm job requeued into its folder
        stored = read_checkpoint(requeued)
        check_finite(stored, requeued)
        check_random_states(stored, requeued)
        check_resumable(model, stored, requeued)
        ckpt_path = requeued  # the one Lightning would pick, now checked
    if new_run:
        check_new_folder(trainer, ckpt_path)
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

def check_new_folder(trainer: pl.Trainer, ckpt_path: str | None) -> None:
    """A new run never writes into a checkpoint folder of another run (its ``last.ckpt`` would
    win over ours); resuming from a checkpoint of that folder continues it there."""
    folder = checkpoint_folder(trainer)
    if folder is None or not folder.is_dir():
        return
    existing = sorted(p.name for p in folder.glob("*.ckpt"))
    run_folders = {folder.resolve(), Path(trainer.default_root_dir).resolve()}
    resuming_here = ckpt_path is not None and Path(ckpt_path).resolve().parent in run_folders
    if existing and not resuming_here:
        last = "last.ckpt" if "last.ckpt" in existing else existing[-1]
        raise ValueError(
            f"{folder} already holds checkpoints of another run ({', '.join(existing[:3])}"
            f"{', ...' if len(existing) > 3 else ''}): give this run its own folder (hydra.run.dir=... or "
            f"callbacks.model_checkpoint.dirpath=...) or continue that run with ckpt_path={folder / last}"
        )

def check_resumable(model: pl.LightningModule, checkpoint: dict[str, Any], path: str) -> None:
    """Refuses, naming the config keys that differ, a checkpoint whose tensors do not fit `model`."""
    ours = model.state_dict()
    wrong = [
        f"{key} {tuple(value.shape)} there, {tuple(ours[key].shape)} here"
        for key, value in checkpoint["state_dict"].items()
        if key in ours and hasattr(value, "shape") and tuple(value.shape) != tuple(ours[key].shape)
    ]
    if not wrong:
        return
    stored, current = flatten(checkpoint["frame"].get("model_config") or {}), flatten(model.model_config or {})
    keys = sorted(k for k in stored.keys() & current.keys() if stored[k] != current[k])
    differences = [f"model.{k} is {stored[k]!r} there, {current[k]!r} here" for k in keys] or wrong
    raise ValueError(
        f"ckpt_path={path} holds a model of another shape ({'; '.join(differences[:4])}): resume with the "
        "settings it was trained with"
    )

def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat

def init_layers(model: pl.LightningModule, ckpt_path: str) -> None:
    """Layer-by-layer growth (Section 7.3): the lowest layers of a net learned from scratch
    start from those of a shallower net's checkpoint (``init_from=...``, with
    ``model.energy.frozen_layers`` to keep them fixed). A resumed run's checkpoint then wins."""
    from frame.checkpoint import read_checkpoint  # here: frame.checkpoint imports this module

    if not hasattr(model.energy, "load_layers"):
        raise ValueError(f"init_from: {type(model.energy).__name__} has no layers learned from scratch to initialise")
    model.energy.load_layers(read_checkpoint(ckpt_path)["state_dict"])
