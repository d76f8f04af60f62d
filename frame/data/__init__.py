"""Image data for FRAME models: reading files/embedded images and the Lightning datamodule."""

from frame.data.datamodule import ImageDataModule, PermutationSampler
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
