"""The measures outside VGG-16 (frame.eval.c2st, spectra, copies): the maths by hand, then calibration.

Calibration on faces: the distances must rank the aligned LFW faces' artefact ladder, each rung
50 images made from faces 0-49 and judged against faces 50-99, from real to noise:

1. held-out real faces (the floor);
2. the same with a 4 px grid (lines every 4 px both ways) of RMS 0.0027 (0.7 grey levels): the
   4 px lattice's power above the smooth spectrum in the chains of the main, fig6 and
   scratch_faces jobs is at most that (scratch_faces; the main job's is no more than real
   faces' own);
3. composites: every image a 4 x 4 patchwork of patches of other faces, each at its place (16 px
   at 64 px, about one feature each: an eye, the nose, a mouth corner): every feature a real
   face's, the whole face nobody's;
4. heavily blurred faces: Gaussian sigma = 1/16 of the side (4 px at 64 px), power tenfold down
   from an eighth of the band up: the face at about 4 cycles across, eyes and mouth gone;
5. uniform white noise (the ceiling).

The spectral ladder is judged at 64 px, the chains' size (it costs milliseconds); the classifier
judges the same ladder built at 32 px, to keep it fast, with the settings ``frame-eval`` uses.
Its accuracy saturates on the top three rungs and sits at chance on the bottom two (the grid is
as faint as the chains': no person sees it on real faces either), so rungs whose accuracies tie
are ranked by its held-out information (bits). On the bottom two that is a paired comparison:
one seed draws the same subsample, folds, initial weights, batches and flips for both, so the
grid is the only difference (its information was the higher on seeds 0-7, all eight).

``grid_peak`` and ``copies`` are detectors, not distances: they are not meant to rank the ladder.
Their calibration is "fires on its own artefact (the grid; training images given back), silent on
every other rung".

On textures (scikit-image's brick, grass, gravel): the exemplar's own crops < crops of another
texture < noise, for the spectrum (Welch's estimate over 32 px tiles, as ``frame-eval`` computes
it for textures, on crops of 32 to 128 px) and the classifier on crops (the Portilla-Simoncelli
distance: tests/test_portilla.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torchvision.transforms.functional import gaussian_blur

from frame.data.images import embedded_images, to_tensor
from frame.eval.c2st import auc_interval, c2st, wilson_interval
from frame.eval.copies import COPY_THRESHOLD, copy_scores, held_out_distances, nearest_distances
from frame.eval.report import TEXTURE_SPECTRUM_SEGMENT
from frame.eval.spectra import (
    GRID_PEAK_BAD,
    QUANTISATION_POWER,
    grid_peak,
    grid_peaks,
    power_spectrum,
    radial_profile,
    segments,
    spectrum_distance,
)
from frame.eval.texture import random_crops

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("eval_pixels")

#: RMS of the 4 px grid added to real faces, in [0, 1] units (0.7 grey levels): the chains' (module docstring)
GRID_AMPLITUDE = 0.0027
LADDER = ("held-out", "grid", "composite", "blur", "noise")
TEXTURES = ("brick", "grass", "gravel")


def four_px_grid(size: int, amplitude: float) -> torch.Tensor:
    """Lines every 4 px both ways, mean-free, root mean square ``amplitude``."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lines = ((y % 4 == 0) | (x % 4 == 0)).float()
    return (lines - lines.mean()) / lines.std() * amplitude


def composites(faces: torch.Tensor, patches: int, generator: torch.Generator) -> torch.Tensor:
    """Each image a ``patches`` x ``patches`` patchwork, every patch from a random other face at its own place."""
    out = faces.clone()
    side = faces.shape[-1] // patches
    for i in range(patches):
        for j in range(patches):
            source = torch.randperm(len(faces), generator=generator)
            rows, cols = slice(i * side, (i + 1) * side), slice(j * side, (j + 1) * side)
            out[:, :, rows, cols] = faces[source][:, :, rows, cols]
    return out


def make_ladder(faces: torch.Tensor) -> dict[str, torch.Tensor]:
    """The artefact ladder (module docstring), each 50 images made from faces 0-49."""
    held_out, size = faces[:50], faces.shape[-1]
    generator = torch.Generator().manual_seed(0)
    sigma = size / 16
    return {
        "held-out": held_out,
        "grid": (held_out + four_px_grid(size, GRID_AMPLITUDE)).clamp(0, 1),
        "composite": composites(held_out, 4, generator),
        "blur": gaussian_blur(held_out, 2 * round(3 * sigma) + 1, sigma),
        "noise": torch.rand(held_out.shape, generator=generator),
    }


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return to_tensor(embedded_images("lfw_faces"), 64)  # [100, 3, 64, 64]


@pytest.fixture(scope="module")
def ladder(faces) -> dict[str, torch.Tensor]:
    """The ladder at 64 px; faces 50-99 are the real images it is judged against."""
    return make_ladder(faces)


@pytest.fixture(scope="module")
def textures() -> dict[str, torch.Tensor]:
    """256 px exemplars, near the 224 px the texture jobs train at."""
    return {name: to_tensor(embedded_images(name), 256) for name in TEXTURES}


# ----------------------------------------------------------------------------- by hand


def test_intervals_by_hand():
    low, high = wilson_interval(45, 60)
    p, z, n = 45 / 60, stats.norm.ppf(0.975), 60
    centre, half = (p + z**2 / (2 * n)) / (1 + z**2 / n), z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    low, high = auc_interval(0.8, 30, 30)
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    se = math.sqrt((0.8 * 0.2 + 29 * (q1 - 0.64) + 29 * (q2 - 0.64)) / 900)
    assert (low, high) == pytest.approx((0.8 - z * se, 0.8 + z * se), abs=1e-9)
    assert auc_interval(1.0, 30, 30) == (1.0, 1.0)


def test_white_noise_spectrum_is_flat_at_its_variance():
    noise = torch.randn(200, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.5
    profile = radial_profile(power_spectrum(noise))
    assert len(profile) == 16
    # variance 0.01 in every bin (grey images count once per replicated channel), plus the quantisation floor
    assert profile.mean().item() == pytest.approx(0.01 + QUANTISATION_POWER, rel=0.05)
    assert (profile / profile.mean()).sub(1).abs().max() < 0.15
    assert spectrum_distance(noise, noise) == 0


def test_spectrum_distance_weighs_octaves_alike_and_saturates_at_a_decade():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(100, 1, 32, 32, generator=g)
    faint = 0.5 + 0.02 * noise
    # contrast x 10^(1/4): every band 10^(1/2) times the power (less the quantisation floor's share)
    assert spectrum_distance(0.5 + 0.02 * 10**0.25 * noise, faint) == pytest.approx(0.5, abs=0.01)
    # contrast x 15: every band more than a decade off, however far: the distance saturates at 1
    assert spectrum_distance(0.5 + 0.3 * noise, faint) == pytest.approx(1.0, abs=1e-3)
    # by hand: radius r weighs 1/r, each band's |log10 ratio| capped at 1
    blurred = gaussian_blur(faint, 5, 1.0)
    error = (radial_profile(power_spectrum(blurred)).log10() - radial_profile(power_spectrum(faint)).log10()).abs().clamp(max=1)
    weight = 1 / torch.arange(1, 17, dtype=torch.float64)
    assert spectrum_distance(blurred, faint) == pytest.approx(float(((weight * error**2).sum() / weight.sum()).sqrt()), rel=1e-12)
    assert error[-1] == 1 and error[0] < 0.1  # the blur took the top band away and left the lowest


def test_welch_segments_are_half_overlapping_tiles_and_their_spectra_are_averaged():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tiles = segments(images, 8)  # 3 x 3 tiles per image, 4 px apart
    assert tiles.shape == (18, 3, 8, 8)
    assert torch.equal(tiles[1], images[0, :, 0:8, 4:12]) and torch.equal(tiles[5], images[0, :, 4:12, 8:16])
    assert torch.equal(tiles[9], images[1, :, 0:8, 0:8])
    other = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.5
    assert spectrum_distance(images, other, 8) == pytest.approx(spectrum_distance(tiles, segments(other, 8)), rel=1e-12)
    assert spectrum_distance(images, other, 16) == spectrum_distance(images, other)  # a segment of the whole image


def test_grid_peak_finds_a_periodic_pattern_at_its_period():
    g = torch.Generator().manual_seed(0)
    smooth = gaussian_blur(torch.rand(40, 3, 32, 32, generator=g), 5, 1.5)
    other = gaussian_blur(torch.rand(40, 3, 32, 32, generator=g), 5, 1.5)
    assert grid_peak(smooth, other) < 1.2
    x = torch.arange(32)
    stripes = 0.02 * torch.cos(2 * math.pi * x / 4).view(1, 1, 1, 32)  # vertical stripes, period 4 px
    peaks = grid_peaks(smooth + stripes, other)
    assert list(peaks) == [2, 4, 8]  # 16 px: fewer than 4 repeats in 32 px
    assert peaks[4] > 3 and peaks[2] < 1.2  # 1/4 cycles per px lies on the 4 px lattice, not on the 2 px one
    with pytest.raises(ValueError, match="too small"):
        grid_peak(smooth[..., :6, :6], other[..., :6, :6])


def test_nearest_distances_and_copies_by_hand():
    training = torch.zeros(3, 1, 2, 2)
    training[1] += 0.5
    training[2] += 1.0
    assert nearest_distances(training, training).tolist() == [0, 0, 0]
    assert nearest_distances(training, training, leave_one_out=True).tolist() == [0.5, 0.5, 0.5]
    samples = training[:2] + torch.tensor([0.1, 0.3]).view(2, 1, 1, 1)
    distances = nearest_distances(samples, training)
    assert distances.tolist() == pytest.approx([0.1, 0.2])
    assert copy_scores(distances, 0.5) == pytest.approx({"copies": 1.0, "copy_ratio": 0.3})
    assert copy_scores(distances, 0.3) == pytest.approx({"copies": 0.5, "copy_ratio": 0.5})  # 0.2 / 0.3 < 0.5 < ...


def test_c2st_is_seeded_balanced_and_leaves_the_global_stream_alone(faces):
    noise = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    small = faces[:20, :, ::4, ::4]
    before = torch.random.get_rng_state()
    result = c2st(noise, small, folds=3, epochs=10)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert result == c2st(noise, small, folds=3, epochs=10)  # to the bit
    assert (result.n_per_side, result.n_test) == (12, 24)  # the 20 faces subsampled to 12
    assert result.accuracy_interval[0] <= result.accuracy <= result.accuracy_interval[1]
    assert result.accuracy > 0.8 and result.p_value < 0.01  # noise against faces
    assert 0.5 < result.information <= 1  # sure of most, in bits
    with pytest.raises(ValueError, match="at least 5 images per side"):
        c2st(noise[:4], small, folds=5)


def test_c2st_upsamples_small_images_to_min_side_both_sets_alike():
    from frame.eval.c2st import _prepared

    small = torch.rand(4, 3, 25, 20, generator=torch.Generator().manual_seed(0))
    seen = _prepared(small, 64)
    assert seen.shape == (4, 3, 80, 64)  # the shorter side to 64, the aspect kept
    expected = torch.nn.functional.interpolate(small, size=(80, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(seen, (expected - 0.5) * 4)
    assert _prepared(small).shape == (4, 3, 25, 20) and _prepared(torch.rand(2, 3, 128, 128), 64).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="min_side must be in"):
        c2st(small, small, folds=2, min_side=128)


# ----------------------------------------------------------------------------- calibration on faces


def test_spectrum_distance_ranks_the_ladder(faces, ladder):
    real = faces[50:]
    distance = {name: spectrum_distance(images, real) for name, images in ladder.items()}
    assert [distance[name] for name in LADDER] == sorted(distance.values()), distance
    assert distance["grid"] < 2 * distance["held-out"] < distance["composite"], distance  # the grid is faint
    assert distance["noise"] < 1  # some bands of white noise are less than tenfold off


def test_grid_peak_flags_the_grid_and_nothing_else(faces, ladder):
    real = faces[50:]
    peak = {name: grid_peak(images, real) for name, images in ladder.items()}
    assert peak["grid"] > GRID_PEAK_BAD, peak
    assert all(value < 1.3 for name, value in peak.items() if name != "grid"), peak


def test_copies_catch_memorised_training_images_and_nothing_on_the_ladder(faces, ladder):
    training = faces[50:]
    typical = float(held_out_distances(training).quantile(0.5))
    # no real face is that close to another: the threshold has a margin below the closest pair
    assert (held_out_distances(training) / typical).min() > 1.3 * COPY_THRESHOLD
    for name, images in ladder.items():
        scores = copy_scores(nearest_distances(images, training), typical)
        assert scores["copies"] == 0, (name, scores)
    floor = copy_scores(held_out_distances(training), typical)
    assert floor == {"copies": 0.0, "copy_ratio": 1.0}
    memorised = (training + four_px_grid(64, GRID_AMPLITUDE)).clamp(0, 1)  # the training faces, with the grid
    scores = copy_scores(nearest_distances(memorised, training), typical)
    assert scores["copies"] == 1 and scores["copy_ratio"] < 0.2


@pytest.mark.slow
def test_c2st_ranks_the_ladder():
    faces = to_tensor(embedded_images("lfw_faces"), 32)
    ladder = make_ladder(faces)
    results = {name: c2st(images, faces[50:]) for name, images in ladder.items()}  # frame-eval's folds and epochs
    read = {name: (round(r.accuracy, 3), round(r.information, 3)) for name, r in results.items()}
    for name in ("held-out", "grid"):  # chance: the accuracy cannot rank them, the information does
        low, high = results[name].accuracy_interval
        assert low < 0.5 < high and results[name].p_value > 0.05, read
    assert results["held-out"].information < results["grid"].information, read
    for name in ("composite", "blur", "noise"):
        assert results[name].accuracy_interval[0] > 0.75, read
    top = [(results[name].accuracy, results[name].information) for name in ("composite", "blur", "noise")]
    assert top[0] < top[1] < top[2], read  # by accuracy, ties by information


# ----------------------------------------------------------------------------- calibration on textures


def texture_ladder(textures: dict[str, torch.Tensor], name: str, side: int, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(exemplar crops, {own: other crops of it, each other texture: its crops, noise}), ``n`` crops of ``side`` px each.

    Own crops come from the whole exemplar, as ``frame-eval``'s floor does (the halves of brick
    differ in lighting, which a classifier sees).
    """
    def crops(images: torch.Tensor, seed: int) -> torch.Tensor:
        return random_crops(images, side, n, torch.Generator().manual_seed(seed))

    sets = {"own": crops(textures[name], 1)}
    sets.update({other: crops(textures[other], 1) for other in TEXTURES if other != name})
    sets["noise"] = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(2))
    return crops(textures[name], 0), sets


@pytest.mark.parametrize("side", [32, 64, 128])
@pytest.mark.parametrize("name", TEXTURES)
def test_spectrum_distance_ranks_own_crops_below_other_textures_below_noise(textures, name, side):
    exemplar, sets = texture_ladder(textures, name, side, 32)
    distance = {key: spectrum_distance(images, exemplar, TEXTURE_SPECTRUM_SEGMENT) for key, images in sets.items()}
    others = [value for key, value in distance.items() if key not in ("own", "noise")]
    assert distance["own"] < min(others) and max(others) < distance["noise"], distance


@pytest.mark.slow
def test_c2st_on_crops_ranks_own_crops_below_another_texture_below_noise(textures):
    exemplar, sets = texture_ladder(textures, "brick", 16, 32)  # brick: the texture preset's exemplar
    del sets["grass"]  # gravel, the harder of the two (bench/README)
    results = {key: c2st(images, exemplar, crop=0.75) for key, images in sets.items()}  # frame-eval's settings for textures
    read = {key: (round(r.accuracy, 3), round(r.information, 3)) for key, r in results.items()}
    low, high = results["own"].accuracy_interval
    assert low < 0.5 < high, read
    assert results["gravel"].accuracy_interval[0] > 0.75, read
    assert (results["gravel"].accuracy, results["gravel"].information) < (results["noise"].accuracy, results["noise"].information), read
