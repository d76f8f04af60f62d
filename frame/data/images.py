"""Reading images: files or package-embedded arrays -> PIL RGB -> float tensors.

Every image handed to a model is a float32 tensor ``[N, 3, H, W]``, RGB, in ``[0, 1]``.
This module owns the whole path to that tensor:

* :func:`list_images` finds image files under a folder, a file, or a list of either;
* :func:`load_image` decodes one file to an 8-bit RGB :class:`PIL.Image.Image`
  (whatever its mode: grey, palette, 16-bit, float, CMYK, with or without alpha);
* :func:`load_images` decodes many, failing on or skipping unreadable files;
* :func:`embedded_images` returns offline images shipped with scikit-image / scikit-learn;
* :func:`to_tensor` resizes, center-crops and stacks images into one tensor.

Decisions worth knowing:

* Transparency is composited over **white** (what a viewer shows for a transparent PNG),
  not dropped: dropping alpha exposes whatever arbitrary colour the encoder left under
  fully transparent pixels.
* 16-bit images (``I;16*`` and Pillow's ``I`` mode, which is how 16-bit PNG/PGM load) are
  scaled by ``255 / 65535``; 32-bit integer data outside ``[0, 65535]`` and float (``F``)
  data outside ``[0, 1]`` are min-max stretched to ``[0, 255]``.
* An image of more than :data:`MAX_PIXELS` pixels is refused before it is decoded (a small
  compressed file can hold a huge image; Pillow's own bomb limit lies far above what fits in
  memory as the tensors built from it).
* Only the first frame of multi-frame files (animated GIF, multi-page TIFF) is used, and
  the EXIF orientation of photos is applied.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps

from frame.choices import EMBEDDED_IMAGES

if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_IMAGES",
    "IMAGE_EXTENSIONS",
    "ON_BAD_IMAGE",
    "ImageDataError",
    "SkippedImageWarning",
    "embedded_images",
    "is_image_file",
    "list_images",
    "load_image",
    "load_images",
    "load_readable",
    "to_rgb",
    "to_tensor",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp",
)
"""File suffixes treated as images (compared case-insensitively)."""

ON_BAD_IMAGE: tuple[str, ...] = ("fail", "skip")
"""Accepted values of ``on_bad_image``."""

OnBadImage = Literal["fail", "skip"]
PathLike = str | os.PathLike
ImageRoot = PathLike | Sequence[PathLike]

MAX_PIXELS = 50_000_000
"""The most pixels of an image frame decodes (a 50-MP photo: 150 MB as 8-bit RGB)."""

_SIXTEEN_BIT_MAX = 65535
_HIGH_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_NAMES_SHOWN = 5


class ImageDataError(ValueError):
    """An image path is missing, empty, not an image, or cannot be decoded."""


class SkippedImageWarning(UserWarning):
    """An unreadable image was skipped because ``on_bad_image="skip"``."""


# --------------------------------------------------------------------------- listing


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _is_hidden(path: Path, root: Path) -> bool:
    """Whether any component of ``path`` below ``root`` starts with a dot (``.DS_Store``, ``._x.jpg``)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_folder(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder`` (hidden files and folders ignored), sorted."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _is_hidden(p, folder))
    if not files:
        raise ImageDataError(f"Image folder is empty: {folder}")
    images = [p for p in files if is_image_file(p)]
    if not images:
        found = ", ".join(str(p.relative_to(folder)) for p in files[:_NAMES_SHOWN])
        more = f" (and {len(files) - _NAMES_SHOWN} more)" if len(files) > _NAMES_SHOWN else ""
        raise ImageDataError(
            f"Image folder has no image files: {folder}. Found {found}{more}; "
            f"expected extensions {', '.join(IMAGE_EXTENSIONS)}."
        )
    return images


def _list_one(root: Path) -> list[Path]:
    """Images named by one path: a folder (searched recursively) or a single image file."""
    if not root.exists():
        raise ImageDataError(f"Image path does not exist: {root}")
    if root.is_dir():
        return _list_folder(root)
    if not is_image_file(root):
        raise ImageDataError(
            f"Not an image file: {root} (expected extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    return [root]


def list_images(root: ImageRoot) -> list[Path]:
    """List the image files named by ``root``.

    Args:
        root: a folder (all image files below it, recursively, sorted; hidden files
            skipped), a single image file, or a sequence of folders/files (e.g. several
            textures for a hybrid), concatenated in the given order.

    Returns:
        Image paths; a file reached twice (say a folder and a file inside it) is kept once.

    Raises:
        ImageDataError: naming the path that does not exist, the folder that is empty or
            holds no images (with a few of the names it does hold), or the file that is
            not an image; also when ``root`` is an empty sequence.
    """
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not roots:
        raise ImageDataError("No image paths given (empty list).")
    found: dict[Path, Path] = {}
    for one in roots:
        for path in _list_one(Path(one).expanduser()):
            found.setdefault(path.resolve(), path)
    return list(found.values())


# --------------------------------------------------------------------------- decoding


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a high-bit-depth single-channel array (Pillow mode ``mode``) to uint8."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= _SIXTEEN_BIT_MAX):
        values = values * (255.0 / _SIXTEEN_BIT_MAX)
    elif mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif high > low:
        values = (values - low) * (255.0 / (high - low))
    else:  # constant image outside the expected range
        values = np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _flatten_alpha(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Composite an image with transparency over ``background``; returns RGB."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    """Whether the image carries an alpha band or a transparency key (palette/tRNS)."""
    return "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any common mode to 8-bit RGB.

    Alpha and palette transparency are composited over white; 16-bit and float data
    are rescaled (see the module docstring) instead of being clipped by Pillow.

    Raises:
        ImageDataError: if Pillow cannot convert the mode (e.g. ``LAB``).
    """
    if image.mode in _HIGH_BIT_MODES:
        grey = _scale_to_uint8(np.asarray(image), image.mode)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if _has_transparency(image):
        return _flatten_alpha(image)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageDataError(f"Cannot convert image mode {image.mode!r} to RGB: {err}") from err


def load_image(path: PathLike) -> Image.Image:
    """Decode one image file to an 8-bit RGB PIL image (first frame, EXIF-oriented).

    Raises:
        ImageDataError: naming ``path`` if it cannot be opened or fully decoded
            (unknown format, truncated data, decompression-bomb size, odd mode, ...).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the budget below is stricter
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDataError(f"{width}x{height} pixels is more than frame reads ({MAX_PIXELS // 1_000_000} MP): "
                                     "reduce the image first")
            image.load()  # force decoding now so truncation errors surface here
            return to_rgb(ImageOps.exif_transpose(image))
    except ImageDataError as err:
        raise ImageDataError(f"Cannot read image {path}: {err}") from err
    except Exception as err:  # Pillow decoders raise many types (OSError, SyntaxError, ...)
        raise ImageDataError(f"Cannot read image {path}: {type(err).__name__}: {err}") from err


def _check_on_bad_image(on_bad_image: str, key: str = "on_bad_image") -> None:
    """Raise a ValueError naming ``key`` if ``on_bad_image`` is not an accepted value."""
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"{key} must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")


def load_readable(paths: Iterable[PathLike], on_bad_image: OnBadImage = "fail") -> list[tuple[Path, Image.Image]]:
    """Decode ``paths``, returning ``(path, image)`` for every file that could be read.

    See :func:`load_images`, which this backs; the paths tell which files survived ``"skip"``.
    """
    _check_on_bad_image(on_bad_image)
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageDataError("No image files to load.")
    loaded: list[tuple[Path, Image.Image]] = []
    for path in paths:
        try:
            loaded.append((path, load_image(path)))
        except ImageDataError as err:
            if on_bad_image == "fail":
                raise
            warnings.warn(f"Skipping unreadable image: {err}", SkippedImageWarning, stacklevel=3)
    if not loaded:
        folder = Path(os.path.commonpath([p.absolute() for p in paths]))
        raise ImageDataError(f"None of the {len(paths)} image files under {folder} could be read.")
    return loaded


def load_images(paths: Iterable[PathLike], on_bad_image: OnBadImage = "fail") -> list[Image.Image]:
    """Decode several image files to RGB PIL images, in order.

    Args:
        paths: image files, e.g. from :func:`list_images`.
        on_bad_image: ``"fail"`` raises on the first unreadable file; ``"skip"`` emits a
            :class:`SkippedImageWarning` naming each unreadable file and goes on.

    Raises:
        ImageDataError: an unreadable file (``"fail"``), no paths, or every file unreadable
            (``"skip"``; the message names the folder holding them).
        ValueError: ``on_bad_image`` is not ``"fail"`` or ``"skip"``.
    """
    return [image for _, image in load_readable(paths, on_bad_image)]


# --------------------------------------------------------------------------- embedded


def _uint8(array: np.ndarray) -> np.ndarray:
    """uint8 view of an image array: floats are taken to lie in ``[0, 1]``."""
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0)
    return array.astype(np.uint8)


def _array_to_rgb(array: np.ndarray) -> Image.Image:
    """A grey ``[H, W]`` or colour ``[H, W, 3]`` array as an RGB PIL image."""
    return Image.fromarray(_uint8(array)).convert("RGB")


def _skimage(name: str) -> Callable[[], list[np.ndarray]]:
    """Loader for one of scikit-image's bundled sample images."""

    def load() -> list[np.ndarray]:
        from skimage import data

        return [getattr(data, name)()]

    return load


def _lfw_faces() -> list[np.ndarray]:
    """The 100 face crops (25x25 grey) that open scikit-image's ``lfw_subset``."""
    from skimage import data

    return list(data.lfw_subset()[:100])


def _sklearn(filename: str) -> Callable[[], list[np.ndarray]]:
    """Loader for one of scikit-learn's sample photos (optional dependency)."""

    def load() -> list[np.ndarray]:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as err:
            raise ImportError(
                f"Embedded image {filename.removesuffix('.jpg')!r} comes from scikit-learn, "
                "which is not installed: pip install scikit-learn"
            ) from err
        return [load_sample_image(filename)]

    return load


def _loader(name: str) -> Callable[[], list[np.ndarray]]:
    """The loader of one name of :data:`EMBEDDED_IMAGES` (``frame.choices``)."""
    if name == "lfw_faces":
        return _lfw_faces
    if name in ("china", "flower"):
        return _sklearn(f"{name}.jpg")
    return _skimage(name)


_EMBEDDED_LOADERS: dict[str, Callable[[], list[np.ndarray]]] = {name: _loader(name) for name in EMBEDDED_IMAGES}


def embedded_images(name: str) -> list[Image.Image]:
    """Offline images shipped inside installed packages, as RGB PIL images.

    ``lfw_faces``: 100 grey 25x25 faces (scikit-image ``lfw_subset``); ``brick``, ``grass``,
    ``gravel``: grey 512x512 textures; ``astronaut``, ``chelsea``, ``coffee``, ``rocket``:
    colour photos (scikit-image); ``china``, ``flower``: colour photos (scikit-learn, optional).

    Raises:
        ValueError: unknown ``name`` (the message lists :data:`EMBEDDED_IMAGES`).
        ImportError: ``china``/``flower`` without scikit-learn installed.
    """
    loader = _EMBEDDED_LOADERS.get(name)
    if loader is None:
        raise ValueError(f"Unknown embedded image set {name!r}; choose from {', '.join(EMBEDDED_IMAGES)}")
    return [_array_to_rgb(array) for array in loader()]


# --------------------------------------------------------------------------- tensors


def _size_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from an int (square) or a pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def _cover_size(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of the smallest aspect-preserving resize of a ``width x height`` image covering ``target``."""
    scale = max(target[0] / height, target[1] / width)
    return max(target[0], round(height * scale)), max(target[1], round(width * scale))


def _image_tensor(image: Image.Image, size: tuple[int, int], grayscale: bool) -> torch.Tensor:
    """One PIL image -> float ``[3, H, W]`` in ``[0, 1]``: resize to cover, center-crop."""
    import torch  # here and in to_tensor: checking or listing paths (is_image_file) loads neither torch nor torchvision
    from torchvision.transforms import v2

    steps: list[v2.Transform] = [v2.Grayscale(num_output_channels=3)] if grayscale else []
    steps += [
        v2.Resize(_cover_size(image.width, image.height, size), antialias=True),
        v2.CenterCrop(size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
    ]
    return v2.Compose(steps)(image.convert("RGB")).as_subclass(torch.Tensor)


def to_tensor(
    images: Sequence[Image.Image],
    image_size: int | tuple[int, int],
    grayscale: bool = False,
) -> torch.Tensor:
    """Stack images into a float32 tensor ``[N, 3, H, W]`` with values in ``[0, 1]``.

    Each image is resized (antialiased, aspect kept) so its shorter side matches
    ``image_size`` (for an ``(H, W)`` pair: so it covers ``H x W``), then center-cropped.

    Args:
        images: PIL images (any mode; converted to RGB).
        image_size: output side, or ``(H, W)``.
        grayscale: convert to grey and replicate it into the 3 channels (face sets).
    """
    import torch

    if not images:
        raise ImageDataError("No images to convert to a tensor.")
    size = _size_hw(image_size)
    return torch.stack([_image_tensor(image, size, grayscale) for image in images])
