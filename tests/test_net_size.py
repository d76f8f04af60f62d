"""Non-stationary FRAME with ``net_size``: the filters see the images upsampled, the chains keep the data's resolution."""

import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from frame.data import to_tensor
from frame.energies import NonStationaryEnergy


def test_filters_see_the_images_upsampled(tiny_extractor):
    energy = NonStationaryEnergy(tiny_extractor, image_size=8, net_size=16)
    assert {layer: tuple(w.shape) for layer, w in energy.weights.items()} == {"a": (4, 16, 16), "b": (5, 8, 8)}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in energy.weights.values():
            w.copy_(torch.randn(w.shape, generator=g))
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    feats = tiny_extractor(F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False))
    by_hand = sum((energy.weights[layer] * feats[layer]).sum(dim=(1, 2, 3)) for layer in ("a", "b"))
    torch.testing.assert_close(energy(x), by_hand)
    energy(x).sum().backward()  # the Langevin gradient reaches the low-resolution pixels
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0


def test_upsampling_is_the_data_pipelines():
    # the chains at the data's resolution, upsampled in the energy, look as the data resized by frame.data does
    pixels = torch.randint(0, 256, (10, 10), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    small = to_tensor([Image.fromarray(pixels.numpy())], 10, grayscale=True)
    large = to_tensor([Image.fromarray(pixels.numpy())], 24, grayscale=True)
    upsampled = F.interpolate(small, size=(24, 24), mode="bilinear", align_corners=False)
    assert (upsampled - large).abs().max() <= 1.5 / 255


@pytest.mark.parametrize("net_size", [0, 8.5, True, "64"])
def test_bad_net_size_names_the_key(tiny_extractor, net_size):
    with pytest.raises(ValueError, match="model.energy.net_size"):
        NonStationaryEnergy(tiny_extractor, image_size=8, net_size=net_size)


@pytest.mark.parametrize("net_size", [8, 4])
def test_net_size_at_or_below_the_image_is_the_plain_model(tiny_extractor, net_size):
    x = torch.rand(2, 3, 8, 8)
    plain, same = NonStationaryEnergy(tiny_extractor, image_size=8), NonStationaryEnergy(tiny_extractor, image_size=8, net_size=net_size)
    assert same.net_size is None
    for a, b in zip(plain.weights.values(), same.weights.values()):
        assert a.shape == b.shape
    torch.testing.assert_close(plain.features(x)["b"], same.features(x)["b"])
