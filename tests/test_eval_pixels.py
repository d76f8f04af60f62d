"""The measures outside VGG-16 (frame.eval.c2st, spectra, copies): the maths by hand, then calibration on faces.

Calibration: each measure must tell the aligned LFW faces' artefact ladder apart, judged against
50 real faces: 50 held-out real faces < the same with a 4 px grid of a few grey levels (the
amplitude of the grid in the main job's chains) < composites of 8 px patches of different faces
< heavily blurred faces (Gaussian, sigma = 2 px at 32 px) < white noise. 32 px keeps it fast.
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
from frame.eval.spectra import (
    GRID_PEAK_BAD,
    QUANTISATION_POWER,
    grid_peak,
    grid_peaks,
    power_spectrum,
    radial_profile,
    spectrum_distance,
)

SIZE = 32
#: RMS of the 4 px grid added to real faces, in [0, 1] units (about 2.5 grey levels)
GRID_AMPLITUDE = 0.01
LADDER = ("held-out", "grid", "composite", "blur", "noise")


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


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return to_tensor(embedded_images("lfw_faces"), SIZE)  # [100, 3, 32, 32]


@pytest.fixture(scope="module")
def ladder(faces) -> dict[str, torch.Tensor]:
    """The artefact ladder, each 50 images made from faces 0-49; faces 50-99 are the real images they are judged against."""
    held_out = faces[:50]
    generator = torch.Generator().manual_seed(0)
    return {
        "held-out": held_out,
        "grid": (held_out + four_px_grid(SIZE, GRID_AMPLITUDE)).clamp(0, 1),
        "composite": composites(held_out, 4, generator),
        "blur": gaussian_blur(held_out, 9, 2.0),
        "noise": torch.rand(held_out.shape, generator=generator),
    }


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
    small = faces[:20, :, ::2, ::2]
    before = torch.random.get_rng_state()
    result = c2st(noise, small, folds=3, epochs=10)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert result == c2st(noise, small, folds=3, epochs=10)  # to the bit
    assert (result.n_per_side, result.n_test) == (12, 24)  # the 20 faces subsampled to 12
    assert result.accuracy_interval[0] <= result.accuracy <= result.accuracy_interval[1]
    assert result.accuracy > 0.8 and result.p_value < 0.01  # noise against faces
    with pytest.raises(ValueError, match="at least 5 images per side"):
        c2st(noise[:4], small, folds=5)


# ----------------------------------------------------------------------------- calibration on faces


def test_spectrum_distance_ranks_the_ladder(faces, ladder):
    real = faces[50:]
    distance = {name: spectrum_distance(images, real) for name, images in ladder.items()}
    assert distance["held-out"] < distance["grid"] < distance["composite"] < distance["blur"], distance
    assert distance["noise"] > 3 * distance["composite"], distance
    # a heavily blurred set has lost the upper half of the spectrum as completely as noise has
    # replaced it: both sit at the ceiling's level, in either order
    assert min(distance["blur"], distance["noise"]) > 10 * distance["held-out"], distance


def test_grid_peak_flags_the_grid_and_nothing_else(faces, ladder):
    real = faces[50:]
    peak = {name: grid_peak(images, real) for name, images in ladder.items()}
    assert peak["grid"] > GRID_PEAK_BAD, peak
    assert all(value < 1.3 for name, value in peak.items() if name != "grid"), peak
    assert peak["held-out"] < peak["grid"]


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
    memorised = (training + four_px_grid(SIZE, GRID_AMPLITUDE)).clamp(0, 1)  # the training faces, with a grid
    scores = copy_scores(nearest_distances(memorised, training), typical)
    assert scores["copies"] == 1 and scores["copy_ratio"] < 0.2


@pytest.mark.slow
def test_c2st_tells_every_artefact_from_real_faces_and_not_real_from_real(faces, ladder):
    real = faces[50:]
    results = {name: c2st(images, real, folds=4, epochs=10) for name, images in ladder.items()}
    accuracy = {name: round(r.accuracy, 3) for name, r in results.items()}
    low, high = results["held-out"].accuracy_interval
    assert low < 0.5 < high and results["held-out"].p_value > 0.05, accuracy
    for name in LADDER[1:]:  # the faint grid is the hardest: told apart, but not every time
        assert results[name].accuracy > accuracy["held-out"] + 0.08 and results[name].p_value < 0.05, accuracy
    for name in ("composite", "blur", "noise"):
        assert results[name].accuracy_interval[0] > 0.75, accuracy
    assert results["noise"].accuracy == max(accuracy.values())
