"""Filter banks: VGG-16 with named taps and its weight sources; the linear Gabor/DoG bank."""

from frame.nets.filter_bank import FilterBank
from frame.nets.vgg import VGG16Features

__all__ = ["FilterBank", "VGG16Features"]
