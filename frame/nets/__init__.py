"""Filter banks: VGG-16 with named taps and its weight sources."""

from frame.nets.vgg import CAFFE, TORCHVISION, Preprocessing, VGG16Features

__all__ = ["CAFFE", "TORCHVISION", "Preprocessing", "VGG16Features"]
