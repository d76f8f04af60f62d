"""Image data for FRAME models: reading files/embedded images and the Lightning datamodule."""

from typing import TYPE_CHECKING, Any

from frame.data.images import (
    EMBEDDED_IMAGES,
    IMAGE_EXTENSIONS,
    ImageDataError,
    SkippedImageWarning,
    embedded_images,
    list_images,
    load_image,
    load_images,
    to_tensor,
)

if TYPE_CHECKING:
    from frame.data.datamodule import ImageDataModule, PermutationSampler


def __getattr__(name: str) -> Any:
    """The Lightning data module on first use: reading images (``frame.data.images``) loads no Lightning."""
    if name in ("ImageDataModule", "PermutationSampler"):
        from frame.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'frame.data' has no attribute {name!r}")


__all__ = [
    "EMBEDDED_IMAGES",
    "IMAGE_EXTENSIONS",
    "ImageDataError",
    "ImageDataModule",
    "PermutationSampler",
    "SkippedImageWarning",
    "embedded_images",
    "list_images",
    "load_image",
    "load_images",
    "to_tensor",
]
