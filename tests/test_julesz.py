"""The Julesz ensemble sampler (Appendix B, eq. 30-32) and ``frame-julesz``, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frame.energies import LinearStationaryEnergy
from frame.julesz import JuleszSampler
from frame.nets import FilterBank
from tests.test_linear_frame import SMALL, texture

SCRIPT = Path(sys.executable).parent / "frame-julesz"
FAST = dict(levels=2, steps_per_level=10, final_steps=60)


def fitted_energy(observed):
    energy = LinearStationaryEnergy(FilterBank(**SMALL), bins=8)
    energy.fit(observed)
    return energy


def test_temperatures_fall_geometrically_to_zero():
    assert JuleszSampler(t_start=1e-2, t_end=1e-4, levels=3).temperatures() == pytest.approx([1e-2, 1e-3, 1e-4, 0.0])
    assert JuleszSampler(levels=0).temperatures() == [0.0]
    with pytest.raises(ValueError, match="projections"):
        JuleszSampler(projections=0)


def test_start_is_white_noise_with_the_observed_mean_and_contrast():
    observed = texture(48, 3) * 0.25 + 30
    energy = fitted_energy(observed)
    start = JuleszSampler().start(energy, observed, n=4, size=40, generator=torch.Generator().manual_seed(0))
    assert start.shape == (4, 1, 40, 40)
    assert abs(float(start.mean() - observed.mean())) < 0.5
    assert float(start.std()) == pytest.approx(float(observed.std()), rel=0.05)
    # white: neighbouring pixels are uncorrelated (the observed texture is smooth)
    assert abs(float(torch.corrcoef(torch.stack([start[..., 1:].flatten(), start[..., :-1].flatten()]))[0, 1])) < 0.05


def test_julesz_sampler_matches_the_observed_histograms():
    observed = texture(24, 12)
    energy = fitted_energy(observed)
    julesz = JuleszSampler(**FAST)
    h_obs = julesz.observed_statistics(energy, observed)
    before = julesz.gap(energy, julesz.start(energy, observed, generator=torch.Generator().manual_seed(0)), h_obs)
    chains = julesz.sample(energy, observed, generator=torch.Generator().manual_seed(0))
    after = julesz.gap(energy, chains, h_obs)
    assert after < 0.01 < 0.3 < before
    lo, hi = energy.input_space.bounds()
    assert bool(((chains >= lo - 1e-4) & (chains <= hi + 1e-4)).all())  # the T = 0 rounds end inside [black, white]


@pytest.mark.parametrize("contrast", [1.0, 0.25])
def test_the_step_follows_the_texture_contrast(contrast):
    # The same texture at a quarter of the contrast has bins a quarter as wide: with eps per unit of
    # the texture's variance the sampler matches it as well; a step fixed in grey levels (here the
    # full texture's contrast, 40) throws the faint one's responses past the outer bins (gap ~4%).
    observed = texture(24, 12) * contrast
    energy = fitted_energy(observed)
    julesz = JuleszSampler(**FAST)
    h_obs = julesz.observed_statistics(energy, observed)
    start = julesz.start(energy, observed, generator=torch.Generator().manual_seed(0))
    scaled = julesz.anneal(energy, start, h_obs, float(observed.std()), torch.Generator().manual_seed(1))
    assert julesz.gap(energy, scaled, h_obs) < 0.01
    if contrast < 1:
        fixed = julesz.anneal(energy, start, h_obs, 40.0, torch.Generator().manual_seed(1))
        assert julesz.gap(energy, fixed, h_obs) > 0.02


# -- frame-julesz --------------------------------------------------------------------------------
def frame_julesz(*args: str) -> subprocess.CompletedProcess:
    if not SCRIPT.is_file():
        pytest.fail(f"frame-julesz is not installed in {SCRIPT.parent}: run `pip install -e . --no-deps`")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def texture_file(tmp_path) -> Path:
    path = tmp_path / "texture.png"
    pixels = ((texture(40, 5) + 115) / 255).clamp(0, 1)[0, 0].numpy()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_command_writes_the_samples_and_prints_the_gap(texture_file, tmp_path):
    out = tmp_path / "julesz" / "samples.png"
    done = frame_julesz("--input", str(texture_file), "--out", str(out), "--image-size", "32", "--n", "2",
                        "--levels", "1", "--steps-per-level", "10", "--final-steps", "80", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    gap = float(re.search(r"^gap (\S+)", done.stdout, re.M).group(1))
    assert gap < 0.03
    with Image.open(out) as image:  # observed + 2 samples of 32 px, torchvision's 2 px padding
        assert image.size == (3 * 32 + 4 * 2, 32 + 2 * 2) and image.mode == "RGB"
        grid = np.asarray(image).astype(float)
    samples = grid[2:34, 36:]
    assert samples.std() > 10  # not a flat image
    assert (grid[..., 0] == grid[..., 2]).all()  # grey


@pytest.mark.parametrize("args, fragment", [
    (["--out", "{tmp}/samples.jpg"], "ending in .png"),
    (["--out", "{tmp}/samples.png", "--levels", "-1"], "levels"),
    (["--out", "{tmp}/samples.png", "--bins", "1"], "--bins"),
    (["--out", "{tmp}/samples.png", "--size", "8"], "--size=8"),
])
def test_command_names_a_bad_value_in_one_line(texture_file, tmp_path, capsys, args, fragment):
    from frame.cli.julesz import main

    assert main(["--input", str(texture_file), *[a.format(tmp=tmp_path) for a in args], "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("frame-julesz: error: ") and err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "samples.png").exists()


def test_command_names_a_missing_texture(tmp_path, capsys):
    from frame.cli.julesz import main

    assert main(["--input", str(tmp_path / "nothing.png"), "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "nothing.png" in err and err.count("\n") == 1
