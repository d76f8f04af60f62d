"""The Portilla-Simoncelli texture distance: its geometry, its formula, and its calibration on
scikit-image's textures (the exemplar's own crops < another texture < noise; blur is seen)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from frame.cli.eval import main
from frame.data.images import embedded_images, to_tensor
from frame.eval import portilla
from frame.eval.portilla import ps_crop_distances, ps_distance, ps_geometry, ps_reference, ps_scales, ps_score, ps_statistics
from frame.eval.texture import random_crops

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("portilla")

TEXTURES = ("brick", "grass", "gravel")
PS_GROUPS = {
    "pixel_statistics", "auto_correlation_magnitude", "skew_reconstructed", "kurtosis_reconstructed",
    "auto_correlation_reconstructed", "std_reconstructed", "cross_orientation_correlation_magnitude", "magnitude_std",
    "cross_scale_correlation_magnitude", "cross_scale_correlation_real", "var_highpass_residual",
}


@pytest.fixture(scope="module")
def textures() -> dict[str, torch.Tensor]:
    return {name: to_tensor(embedded_images(name), 128) for name in TEXTURES}  # [1, 3, 128, 128] grey


def crops(images: torch.Tensor, n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    return random_crops(images, size, n, torch.Generator().manual_seed(seed))


def blur(images: torch.Tensor, k: int) -> torch.Tensor:
    return nn.functional.avg_pool2d(images, k, 1, k // 2, count_include_pad=False)


@pytest.mark.parametrize(("sample_side", "exemplar_side", "max_crop", "expected"), [
    (64, 512, 128, (64, 3)), (128, 512, 128, (128, 4)), (224, 512, 128, (128, 4)), (224, 512, 224, (224, 4)),
    (100, 512, 128, (96, 3)), (64, 64, 128, (32, 2)),
])
def test_geometry_gives_a_crop_the_pyramid_can_halve(sample_side, exemplar_side, max_crop, expected):
    side, n_scales = ps_geometry(sample_side, exemplar_side, max_crop)
    assert (side, n_scales) == expected
    assert side % 2**n_scales == 0 and side // 2**n_scales >= portilla.MIN_COARSEST
    assert ps_scales(side) == n_scales


def test_geometry_refuses_crops_too_small_in_one_line():
    with pytest.raises(ValueError, match="at least 16 px"):
        ps_geometry(12, 512)


def test_statistics_are_plenoptics_groups_without_min_and_max():
    grey = ps_statistics(torch.rand(2, 1, 32, 32), colour=False)
    assert set(grey.groups) == PS_GROUPS
    assert grey.groups.count("pixel_statistics") == 4  # mean, variance, skew, kurtosis
    assert grey.values.shape == (2, len(grey.groups)) and torch.isfinite(grey.values).all()
    colour = ps_statistics(torch.rand(2, 3, 32, 32), colour=True)
    assert len(colour.groups) == 3 * len(grey.groups) + 3 * ps_scales(32)
    assert set(colour.groups) == {f"{c}/{g}" for c in ("luminance", "red-green", "yellow-blue") for g in PS_GROUPS} | {"cross_channel_correlation"}


def test_statistics_of_a_224_px_crop_and_of_a_flat_crop_are_finite():
    assert torch.isfinite(ps_statistics(torch.rand(1, 1, 224, 224), colour=False).values).all()
    assert torch.isfinite(ps_statistics(torch.full((1, 3, 32, 32), 0.5), colour=True).values).all()


def test_distance_is_the_group_normalised_root_mean_square(textures):
    exemplar = crops(textures["brick"])
    reference = ps_reference(exemplar)
    stats = ps_statistics(exemplar, colour=False)
    z2 = ((stats.values - reference.mean) / reference.spread).pow(2)
    by_hand = torch.stack([z2[:, [i for i, g in enumerate(stats.groups) if g == name]].mean(1) for name in dict.fromkeys(stats.groups)], 1)
    assert torch.allclose(ps_crop_distances(exemplar, reference), by_hand.mean(1).sqrt())
    # on the reference crops themselves each group's mean square is (n-1)/n, less where the 1% spread floor rules
    n = len(exemplar)
    assert 0.8 * (n - 1) / n < ps_crop_distances(exemplar, reference).pow(2).mean() <= (n - 1) / n + 1e-9


@pytest.mark.parametrize("name", TEXTURES)
def test_ranks_own_crops_below_other_textures_below_noise(textures, name):
    exemplar = textures[name][..., :64]  # the left half; the samples come from the right half
    own = ps_score(textures[name][..., 64:], exemplar, n_crops=16)
    others = [ps_score(textures[other][..., 64:], exemplar, n_crops=16).value for other in TEXTURES if other != name]
    assert abs(own.floor) < 0.2  # other crops of the exemplar: about one spread, log 1 = 0
    assert own.floor < own.value < min(others)
    assert max(others) < own.ceiling


@pytest.mark.parametrize("name", TEXTURES)
def test_sees_a_blurred_texture(textures, name):
    exemplar = textures[name][..., :64]
    own = ps_score(textures[name][..., 64:], exemplar, n_crops=16)
    blurred = ps_score(blur(textures[name][..., 64:], 5), exemplar, n_crops=16)
    assert own.value < blurred.value < blurred.ceiling


def test_colour_exemplar_is_judged_in_colour_grey_on_luminance(textures):
    brick, gravel = textures["brick"][:, :1], textures["gravel"][:, :1]
    colourful = torch.cat([brick, (brick + gravel) / 2, gravel], 1)  # red brick, blue gravel
    exemplar, same = colourful[..., :64], colourful[..., 64:]
    swapped = torch.cat([gravel, (brick + gravel) / 2, brick], 1)[..., 64:]  # same luminance, colours swapped
    grey = same.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # same luminance, no colour
    colour = ps_reference(crops(exemplar))
    assert colour.colour and not ps_reference(crops(textures["brick"])).colour
    luminance = ps_reference(crops(exemplar), colour=False)
    on_luminance = [ps_distance(crops(x, seed=1), luminance) for x in (same, swapped, grey)]
    assert on_luminance == pytest.approx([on_luminance[0]] * 3)
    in_colour = [ps_distance(crops(x, seed=1), colour) for x in (same, swapped, grey)]
    assert in_colour[0] < in_colour[1] < in_colour[2]
    assert in_colour[2] - in_colour[0] > 1  # more than e times farther


def test_crops_of_another_size_are_refused(textures):
    reference = ps_reference(crops(textures["brick"]))
    with pytest.raises(ValueError, match="32 px crops"):
        ps_distance(crops(textures["grass"], size=64), reference)


@pytest.fixture
def without_plenoptic(monkeypatch):
    """As if plenoptic were not installed (the cached models and layouts forgotten before and after)."""
    monkeypatch.setattr(portilla, "PortillaSimoncelli", None)
    portilla._model.cache_clear()
    portilla._layout.cache_clear()
    yield
    portilla._model.cache_clear()
    portilla._layout.cache_clear()


def test_missing_plenoptic_names_the_package(without_plenoptic):
    with pytest.raises(ImportError, match=r"pip install 'plenoptic>=2.1'"):
        ps_statistics(torch.rand(2, 1, 32, 32), colour=False)


def test_frame_eval_without_plenoptic_says_what_to_install_in_one_line(without_plenoptic, tmp_path, capsys):
    for i in range(2):
        noise = (torch.rand(64, 64, generator=torch.Generator().manual_seed(i)) * 255).byte().numpy()
        Image.fromarray(noise).save(tmp_path / f"{i}.png")
    out = tmp_path / "scores.json"
    status = main(["--samples", str(tmp_path), "--data", "brick", "--kind", "texture", "--n-crops", "4", "--vgg-source", "random", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("frame-eval: error: ") and "pip install 'plenoptic>=2.1'" in err
    assert not out.exists()
