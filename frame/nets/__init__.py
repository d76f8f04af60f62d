"""Filter banks: VGG-16 with named taps and its weight sources."""

from frame.nets.vgg import VGG16Features

__all__ = ["VGG16Features"]
