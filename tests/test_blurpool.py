"""Anti-aliased max-pooling in the VGG extractor (``pooling=blurmax``)."""

import pytest
import torch
from torch import nn

from frame.nets.vgg import BlurMaxPool2d, VGG16Features


@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_halves_the_side_and_keeps_a_constant(padding):
    pool = BlurMaxPool2d(padding)
    x = torch.full((2, 3, 8, 10), 0.7)
    torch.testing.assert_close(pool(x), torch.full((2, 3, 4, 5), 0.7))


def test_shifts_change_the_pooled_maps_less_than_max_pooling():
    # Zhang (2019): blurring before subsampling keeps a one-pixel shift from scrambling the pooled map
    x = torch.rand(16, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    shifted = x.roll(1, dims=-1)
    change = {}
    for name, pool in (("max", nn.MaxPool2d(2, 2)), ("blurmax", BlurMaxPool2d("circular"))):
        change[name] = float((pool(x) - pool(shifted)).pow(2).mean() / pool(x).var())
    assert change["blurmax"] < 0.5 * change["max"]


def test_circular_blurmax_commutes_with_even_shifts():
    pool = BlurMaxPool2d("circular")
    x = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(pool(x.roll(2, dims=-1)), pool(x).roll(1, dims=-1))


def test_vgg_with_blurmax_keeps_the_shapes_and_the_weights():
    plain = VGG16Features(["conv1_1", "conv3_3"], source="random")
    blur = VGG16Features(["conv1_1", "conv3_3"], source="random", pooling="blurmax")
    assert plain.state_dict().keys() == blur.state_dict().keys()
    x = torch.rand(2, 3, 32, 32)
    for name, feat in blur(x).items():
        assert tuple(feat.shape[1:]) == blur.feature_shape(name, 32, 32)


def test_unknown_pooling_names_the_key():
    with pytest.raises(ValueError, match="model.energy.extractor.pooling"):
        VGG16Features(["conv3_3"], source="random", pooling="blur")
