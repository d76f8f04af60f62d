"""Builds the objects of a run from its composed Hydra config (compose -> build)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from frame.input_space import network_space
from frame.nets.vgg import CHECKPOINT_SOURCE

if TYPE_CHECKING:
    import pytorch_lightning as pl


def instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; a constructor's own ``ValueError`` (whose message names the
    config key) comes out as it is, not wrapped in Hydra's ``InstantiationException``."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


#: keys of the model config that set up the run around the model, not the model itself
RUN_KEYS = ("precondition",)
#: the chain source of a model trained for image recovery (``model.buffer``)
RECOVERY_CHAINS = "frame.recovery.RecoveryChains"


def build_model(model_cfg: DictConfig) -> pl.LightningModule:
    """The LightningModule of ``model_cfg``; its resolved config rides along into checkpoints,
    with no path of this machine in it (``self_contained``). ``model.precondition`` is the run's
    (``frame.run.precondition``): the model is built without it."""
    config = recovery_as_buffer(OmegaConf.to_container(model_cfg, resolve=True))
    model = instantiate(OmegaConf.create({key: value for key, value in config.items() if key not in RUN_KEYS}))
    model.model_config = self_contained(config)
    return model


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every entry of a config group such as ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [instantiate(entry) for entry in cfg.values() if entry is not None and "_target_" in entry]


def prepare_data(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module; ``data.grayscale=auto`` becomes true or false from the images, before
    the model is built, so that grey images (R = G = B) give grey chains (``${data.grayscale}``
    in the model config)."""
    datamodule = instantiate(cfg.data)
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


def recovery_as_buffer(config: dict[str, Any]) -> dict[str, Any]:
    """A model config with ``model.recovery: {...}`` (the key of earlier versions, still taken) as
    what it now is: the chain source ``model.buffer`` of ``_target_: frame.recovery.RecoveryChains``
    with those settings; ``recovery: null`` goes."""
    config = dict(config)
    recovery = config.pop("recovery", None)
    if recovery:
        config["buffer"] = {**(config.get("buffer") or {}), "_target_": RECOVERY_CHAINS, **recovery}
    return config
