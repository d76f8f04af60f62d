"""Reading checkpoints safely and rebuilding the model they hold; where a run's checkpoints go.

A checkpoint is a file from outside: it may be crafted. It is read with
``torch.load(weights_only=True)`` (no pickled objects), and the model config stored in it is
checked against what we ship before anything is built from it: every ``_target_`` must be
one of ``ALLOWED_TARGETS``, and no value may be an interpolation (``${...}``, which could
decode into new targets). A checkpoint is self-contained: the filter bank's weights come from
its state dict, so loading never touches a weight source, a cache or the network.

For a run: the checks before resuming (``check_resumable``), the folder policy
(``check_new_folder``: a new run never writes among another run's checkpoints) and Slurm's
requeue (``requeued_checkpoint``).

Sizes are checked before memory is taken: the file must be a zip archive (what ``torch.save``
writes) of uncompressed records no larger than the file itself, so that loading it takes no
more memory than its size; the model its config describes is first built on the meta device
(no memory) and its tensors' shapes compared with the stored ones, so that a config asking
for more chains or larger images than the file holds is refused before anything is allocated.
The config's values are checked by the constructors of what it builds (on the meta device), every
floating tensor must be finite and the random generators' states must be ones torch accepts:
otherwise one error names the key or the tensor.
"""

from __future__ import annotations

import os
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from frame.run.build import build_model, recovery_as_buffer, self_contained
from frame.sampling import fast_bf16

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from frame.models.base import FrameModel

#: what a stored model config may build
ALLOWED_TARGETS = frozenset({
    "frame.models.FrameModel",
    "frame.models.base.FrameModel",
    *(f"frame.energies.{name}" for name in ("NonStationaryEnergy", "StationaryEnergy", "GConvNetEnergy", "ScratchEnergy")),
    "frame.energies.deep_frame.NonStationaryEnergy",
    "frame.energies.deep_frame.StationaryEnergy",
    "frame.energies.gconvnet.GConvNetEnergy",
    "frame.energies.scratch.ScratchEnergy",
    "frame.energies.MultigridEnergy",
    "frame.energies.multigrid.MultigridEnergy",
    "frame.energies.LinearStationaryEnergy",
    "frame.energies.LinearNonStationaryEnergy",
    "frame.energies.linear_frame.LinearStationaryEnergy",
    "frame.energies.linear_frame.LinearNonStationaryEnergy",
    "frame.energies.TopLayerEnergy",
    "frame.energies.top_layer.TopLayerEnergy",
    "frame.nets.FilterBank",
    "frame.nets.filter_bank.FilterBank",
    "frame.nets.VGG16Features",
    "frame.nets.vgg.VGG16Features",
    "frame.sampling.LangevinSampler",
    "frame.coarse_to_fine.CoarseToFineSampler",
    "frame.buffer.ChainBuffer",
    "frame.recovery.RecoveryChains",
    "frame.recovery.chains.RecoveryChains",
    "frame.schedules.log_decay",
    *(f"torch.optim.{name}" for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")),
    *(f"torch.optim.lr_scheduler.{name}" for name in (
        "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "ConstantLR",
    )),
})
#: the Hydra keys a stored config may use besides ``_target_``
HYDRA_KEYS = frozenset({"_partial_", "_convert_", "_recursive_"})
FORMAT = 4
#: deeper than any config we write: a crafted nesting fails here, not in a RecursionError
MAX_DEPTH = 32


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or holds something we do not build."""


def check_config(config: Any, origin: str, key: str = "model", depth: int = 0) -> None:
    """Refuses anything in `config` that we would not build ourselves, naming the key."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{origin}: refused {key}: nested deeper than any config frame writes")
    if isinstance(config, dict):
        for name, value in config.items():
            where = f"{key}.{name}"
            if not isinstance(name, str):
                raise CheckpointError(f"{origin}: refused {key}: its key {name!r} is not a string")
            if "${" in name:
                raise CheckpointError(f"{origin}: refused {where}: interpolations are not allowed in a checkpoint")
            if name == "_target_":
                if not isinstance(value, str) or value not in ALLOWED_TARGETS:
                    raise CheckpointError(
                        f"{origin}: refused {where}={value!r}: a checkpoint may only build frame's own "
                        "models, energies, nets, samplers and torch optimizers"
                    )
            elif name.startswith("_") and name.endswith("_") and name not in HYDRA_KEYS:
                raise CheckpointError(f"{origin}: refused {where}: Hydra key {name} is not allowed in a checkpoint")
            else:
                check_config(value, origin, where, depth + 1)
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            check_config(value, origin, f"{key}[{i}]", depth + 1)
    elif isinstance(config, str):
        if "${" in config:
            raise CheckpointError(f"{origin}: refused {key}={config!r}: interpolations are not allowed in a checkpoint")
    elif config is not None and not isinstance(config, (bool, int, float)):
        raise CheckpointError(f"{origin}: refused {key}: a {type(config).__name__} is not a config value")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint safely, upgraded to the current format, its config checked, its tensors finite
    and its random states ones torch, numpy and python accept (whoever reads it: a command, a resume, a
    requeue, ``init_from``)."""
    path = existing_file(path)
    check_archive(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, or a pickle of objects
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is not a torch checkpoint of tensors and plain values "
            f"({load_failure(err)}); it is damaged or was not written by frame's train.py: use the "
            "checkpoints/last.ckpt of a train.py run"
        ) from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
            and isinstance(checkpoint.get("frame"), dict)):
        raise CheckpointError(f"{path} is not a checkpoint written by frame's train.py (no model config inside)")
    try:
        checkpoint = upgrade(checkpoint)
    except (TypeError, KeyError, AttributeError) as err:  # a crafted or damaged format-1 header
        raise CheckpointError(f"{path}: its frame header is not one frame's train.py writes ({type(err).__name__})") from None
    config = checkpoint["frame"].get("model_config")
    if config is not None and not isinstance(config, dict):
        raise CheckpointError(f"{path}: its model config is a {type(config).__name__}, not a config")
    check_config(config, str(path))
    check_finite(checkpoint, path)
    check_random_states(checkpoint, path)
    return checkpoint


def existing_file(path: str | Path) -> Path:
    """`path`, or the error a missing checkpoint gives (a command checks it before its other work)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    return path


def check_archive(path: Path) -> None:
    """Refuses a file that is not a zip archive of uncompressed records, each within the file's size.

    ``torch.save`` stores every record uncompressed; a compressed record (a checkpoint re-zipped
    with deflate) could unpack to far more memory than the file takes on disk.
    """
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is not a torch checkpoint (a zip archive); it is damaged or was not "
            "written by frame's train.py: use the checkpoints/last.ckpt of a train.py run"
        ) from None
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: refused: its record {record.filename} is compressed (torch.save stores "
                                  "records uncompressed; a compressed one could unpack to any size)")
        if record.file_size != record.compress_size or record.file_size > size:
            raise CheckpointError(f"{path}: refused: its record {record.filename} claims {record.file_size} bytes "
                                  f"in a file of {size}")


def tensors(value: Any, key: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor inside `value` (nested dicts and lists), with the key that reaches it."""
    if isinstance(value, torch.Tensor):
        return [(key, value)]
    if isinstance(value, dict):
        return [found for name, item in value.items() for found in tensors(item, f"{key}.{name}" if key else str(name))]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in tensors(item, f"{key}[{i}]")]
    return []


def check_finite(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuses a checkpoint whose weights or chains hold NaN or infinity, naming the tensor."""
    for key, tensor in tensors(checkpoint["state_dict"], ""):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: refused: its tensor {key} holds NaN or infinite values (a diverged or damaged run)")


def check_random_states(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuses random-generator states torch, numpy or python would reject on resume, naming them.

    Each state is tried on a fresh generator, never on the global ones.
    """
    chains = checkpoint["state_dict"].get("buffer._extra_state")
    try:
        if chains is not None:
            if not (isinstance(chains, dict) and isinstance(chains.get("device"), str)
                    and isinstance(chains.get("state"), torch.Tensor)):
                raise TypeError("not a generator state")
            if chains["device"] == "cpu":
                torch.Generator().set_state(chains["state"])
    except (TypeError, RuntimeError, ValueError):
        raise CheckpointError(f"{path}: refused: its chains' random state (state_dict buffer._extra_state) is damaged") from None
    states = (checkpoint.get("callbacks") or {}).get("RandomStates")
    if states is None:
        return
    try:
        torch.Generator().set_state(states["torch"])
        n = states["numpy"]
        np.random.RandomState().set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss_next = states["python"]
        random.Random().setstate((version, tuple(internal), gauss_next))
    except (TypeError, RuntimeError, ValueError, KeyError, AttributeError, IndexError):
        raise CheckpointError(f"{path}: refused: its random states (callbacks.RandomStates) are damaged") from None


def check_buildable(config: dict[str, Any], state_dict: dict[str, Any], path: str | Path) -> None:
    """Builds the stored model config on the meta device (no memory; its constructors check its
    values) and refuses, naming the tensor, stored tensors whose shapes differ from the ones it describes."""
    skeleton = build_stored(config, path, device="meta")
    for key, wanted in skeleton.state_dict().items():
        stored = state_dict.get(key)
        if isinstance(stored, torch.Tensor) and isinstance(wanted, torch.Tensor) and stored.shape != wanted.shape:
            raise CheckpointError(
                f"{path}: refused: its config describes {key} of shape {tuple(wanted.shape)} but the file holds "
                f"{tuple(stored.shape)}: the config or the weights were changed"
            )


def build_stored(config: dict[str, Any], path: str | Path, device: str = "cpu") -> FrameModel:
    """The model of a checked stored config, built on `device`; a constructor's error names the file."""
    try:
        with torch.device(device):
            return build_model(OmegaConf.create(self_contained(config)))
    except (InstantiationException, OmegaConfBaseException, ValueError, TypeError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ is not None else err
        where = getattr(err, "full_key", None) or _full_key(str(err))
        key = f" ({where})" if where else ""
        raise CheckpointError(f"{path}: its stored model config cannot be built{key}: {' '.join(str(cause).split())[:300]}") from None


def _full_key(text: str) -> str | None:
    found = re.search(r"full_key: (\S+)", text)
    return f"model.{found.group(1)}" if found else None


def load_failure(err: Exception) -> str:
    """What torch.load found wrong, without its advice to load with ``weights_only=False``
    (which would run whatever code a crafted file holds)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\.?\n|$)", text)
    if found:
        return found.group(1).strip()[:200]
    if "weights_only" in text:
        return type(err).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first.split(". ")[0][:200]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> FrameModel:
    """The model saved in `path`, built from its stored config, weights and chains restored."""
    checkpoint = read_checkpoint(path)
    config = checkpoint["frame"].get("model_config")
    if not config:
        raise CheckpointError(f"{path} carries no model config; it was not written by frame's train.py")
    check_buildable(config, checkpoint["state_dict"], path)
    model = build_stored(config, path)
    if model.sampler.precision == "bf16" and not fast_bf16(device):
        # bf16 was the default of earlier versions; emulated bf16 runs ~25x slower than fp32
        warnings.warn(f"{path}: model.sampler.precision=bf16 runs far slower than fp32 on this {torch.device(device).type} "
                      "(no AVX512_BF16, AMX or CUDA bf16): sampling with precision=auto (fp32 here)")
        model.sampler.precision = "auto"
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes: {str(err)[:300]}") from None
    return model.to(device).eval()


# -- checkpoints written before the config mirrored the objects (format 1) -----------------------
_ENERGIES = {
    "NonStationaryFrame": ("frame.energies.NonStationaryEnergy", ("extractor", "image_size")),
    "StationaryFrame": ("frame.energies.StationaryEnergy", ("extractor",)),
    "GConvNetFrame": ("frame.energies.GConvNetEnergy", (
        "extractor", "n_filters", "kernel_size", "stride", "padding", "pool_size", "pool_stride", "init_std", "layer")),
    "ScratchFrame": ("frame.energies.ScratchEnergy", (
        "image_size", "channels", "layers", "readout", "init_std", "frozen_layers", "reference_mean", "activation")),
}


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Rewrites an older checkpoint in place into the current format; a current one is returned
    unchanged. Format 1: ``model.n_chains``, ``model.chains``, a class per variant; format 2:
    ``model.recovery`` beside ``model.buffer`` (now the chain source ``RecoveryChains``); format 3:
    a ``MultigridModel`` (now a ``FrameModel`` with a ``CoarseToFineSampler``)."""
    frame = checkpoint.get("frame", {})
    if frame.get("format", 1) >= FORMAT:
        return checkpoint
    if frame.get("format", 1) < 2:
        upgrade_format_1(checkpoint)
    if isinstance(frame.get("model_config"), dict):
        frame["model_config"] = multigrid_as_sampler(recovery_as_buffer(frame["model_config"]))
    frame["format"] = FORMAT
    return checkpoint


def multigrid_as_sampler(config: dict[str, Any]) -> dict[str, Any]:
    """Format 3 -> 4: a ``MultigridModel`` config as what it now is, a ``FrameModel`` whose
    sampler runs coarse to fine."""
    if config.get("_target_") not in ("frame.models.MultigridModel", "frame.models.multigrid.MultigridModel"):
        return config
    sampler = {**(config.get("sampler") or {}), "_target_": "frame.coarse_to_fine.CoarseToFineSampler"}
    return {**config, "_target_": "frame.models.FrameModel", "sampler": sampler}


def upgrade_format_1(checkpoint: dict[str, Any]) -> None:
    """Format 1 -> 2."""
    frame = checkpoint["frame"]
    variant = frame.get("variant")
    if variant not in _ENERGIES:
        raise CheckpointError(f"this checkpoint holds an unknown model {variant!r}; retrain it with this version of frame")
    old = dict(frame.get("model_config") or {})
    target, energy_keys = _ENERGIES[variant]
    energy = {"_target_": target, **{k: old[k] for k in energy_keys if k in old}}
    if isinstance(energy.get("extractor"), dict) and "preprocessing" in energy["extractor"]:
        energy["extractor"]["input_space"] = energy["extractor"].pop("preprocessing")
    chains = old.get("chains") or {}
    frame["model_config"] = {
        "_target_": "frame.models.FrameModel",
        "image_size": old.get("image_size", 64),
        "canvas_size": old.get("canvas_size"),
        "energy": energy,
        "sampler": old.get("sampler"),
        "buffer": {"_target_": "frame.buffer.ChainBuffer", "_partial_": True, "n_chains": old.get("n_chains", 16), **chains},
        "optimizer": old.get("optimizer"),
        "scheduler": old.get("scheduler"),
        "precondition": old.get("lr_scaling", "none"),
        "recovery": old.get("recovery"),
    }
    state = checkpoint["state_dict"]
    for key in [k for k in state if ".preprocessing." in k]:
        state[key.replace(".preprocessing.", ".input_space.")] = state.pop(key)
    state.setdefault("buffer._extra_state", frame.get("noise_generator"))
    frame.update(format=2, energy=target.rsplit(".", 1)[-1])


# -- a run's checkpoints: resume checks, folder policy, requeue --------------------------------
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
    saved = checkpoint["frame"].get("energy")
    if saved is not None and saved != type(model.energy).__name__:
        raise ValueError(f"ckpt_path={path} holds a model with a {saved} but the run builds one with a "
                         f"{type(model.energy).__name__}: pass the same model=... as the run that wrote it")
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


def checkpoint_folder(trainer: pl.Trainer) -> Path | None:
    """Where the run's ``ModelCheckpoint`` writes (None without one, or for a remote store)."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    folder = callback.dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
    return None if "://" in str(folder) else Path(folder)


def requeued_checkpoint(trainer: pl.Trainer) -> str | None:
    """Under Slurm, the checkpoint Lightning saved on SIGUSR1 before requeueing the job
    (``<run folder>/hpc_ckpt_<n>.ckpt``, the newest), which it would resume from by itself."""
    from lightning_fabric.plugins.environments import SLURMEnvironment  # a run has Lightning loaded; a read does not

    if not SLURMEnvironment.detect():
        return None
    found = [(int(m.group(1)), path) for path in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
             if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name))]
    return str(max(found)[1]) if found else None
