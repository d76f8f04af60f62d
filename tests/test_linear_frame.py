"""Linear-filter FRAME (Section 3): the Gabor/DoG bank, eq. (5)-(7), filter pursuit (the Julesz sampler: test_julesz.py)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from frame.buffer import ChainBuffer
from frame.energies import LinearNonStationaryEnergy, LinearStationaryEnergy, StationaryEnergy
from frame.energies.linear_frame import hard_histogram, soft_histogram
from frame.models import FrameModel
from frame.nets import FilterBank
from frame.nets.filter_bank import dog, gabor, kernel_grid
from frame.pursuit import ChannelPursuit, FilterPursuit, free_channels, histogram_gaps, pick
from frame.sampling import LangevinSampler
from tests.test_energy import filled_weights

SMALL = dict(scales=(1.0, 2.0), orientations=4, dog_scales=(1.0,))


def texture(size=24, seed=0):
    """A grey random texture in input space (0-255 minus the mean), smooth enough to have structure."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(1, 1, size + 2, size + 2, generator=g), 3, 1)
    return 40 * x / x.std()


# -- the filter bank -----------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_gabor_and_dog_are_zero_mean_with_unit_norm(norm):
    for k in [gabor(s, math.radians(a), p, norm) for s in (1.0, 2.0, 3.0) for a in (0, 30, 90) for p in ("cos", "sin")] + [
        dog(s, norm) for s in (1.0, 2.0)
    ]:
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert abs(float(k.sum())) < 1e-5
        size = float(k.abs().sum()) if norm == "l1" else float(k.pow(2).sum().sqrt())
        assert size == pytest.approx(1.0, abs=1e-5)


def test_gabor_shapes_phases_and_orientation():
    # kernels grow with the scale (2.5 sds of the elongated envelope)
    assert [gabor(s, 0.0, "cos").shape[0] for s in (1.0, 2.0, 3.0)] == [9, 17, 25]
    even, odd = gabor(2.0, 0.3, "cos"), gabor(2.0, 0.3, "sin")
    torch.testing.assert_close(even, even.flip(0, 1))  # a bar: even
    torch.testing.assert_close(odd, -odd.flip(0, 1))  # an edge: odd
    # theta = 0: the wave runs along x, so stripes varying along x excite it, stripes along y do not
    x = torch.arange(48.0)
    stripes = torch.cos(2 * math.pi * x / 6.0).expand(48, 48)[None, None]  # wavelength 3 x scale 2
    k = gabor(2.0, 0.0, "cos")[None, None]
    across, along = (F.conv2d(s, k).abs().mean() for s in (stripes, stripes.transpose(-1, -2)))
    assert across > 20 * along


def test_bank_holds_gabors_dogs_and_the_delta_and_filters_like_conv2d():
    bank = FilterBank(**SMALL)
    assert len(bank.names) == 1 + 1 + 2 * 4 * 2 == bank.channels("filters")
    assert bank.names[0] == "delta" and bank.names[1] == "dog_s1" and "gabor_s2_o45_sin" in bank.names
    x = texture(32)
    out = bank(x)["filters"]
    assert out.shape == (1, len(bank.names), 32, 32) == (1, *bank.feature_shape("filters", 32, 32))
    p = bank.max_size // 2
    torch.testing.assert_close(out, F.conv2d(F.pad(x, (p,) * 4, mode="circular"), bank.kernels()), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out[:, 0], x[:, 0], atol=1e-3, rtol=1e-5)  # the delta filter is the image
    sub = FilterBank(**SMALL, filters=["gabor_s1_o90_cos", "delta"])
    torch.testing.assert_close(sub(x)["filters"], out[:, [bank.names.index("gabor_s1_o90_cos"), 0]])
    grid = kernel_grid(bank)
    assert grid.shape == (len(bank.names), 1, bank.max_size, bank.max_size) and 0 <= grid.min() and grid.max() <= 1


def test_bank_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown filters"):
        FilterBank(filters=["gabor_s9_o0_cos"])
    with pytest.raises(ValueError, match="padding"):
        FilterBank(padding="mirror")
    with pytest.raises(ValueError, match="data.image_size=16 is smaller than the largest filter"):
        FilterBank().check_image_size(16, "data.image_size")


# -- eq. (5): the histogram energy -----------------------------------------------------------------
def test_soft_histogram_is_a_histogram_that_tends_to_the_hard_one():
    t = torch.randn(2, 3, 20, 20, generator=torch.Generator().manual_seed(0)) * 3 + 8  # bin coordinates
    hard = hard_histogram(t, 16)
    distances = []
    for s in (1.0, 0.3, 0.1, 0.01, 1e-4):
        soft = soft_histogram(t, 16, s)
        torch.testing.assert_close(soft.sum(-1), torch.ones(2, 3))
        distances.append(float((soft - hard).abs().sum(-1).max()))
    assert distances == sorted(distances, reverse=True) and distances[0] > 0.05
    assert distances[-1] < 1e-3


def fitted_stationary(bins=8):
    energy = LinearStationaryEnergy(FilterBank(**SMALL), bins=bins)
    energy.fit(texture(24, seed=1))
    return filled_weights(energy)


def test_histogram_energy_is_eq_5():
    energy = fitted_stationary()
    x = torch.cat([texture(24, 2), texture(24, 3)])
    r = energy.features(x)["filters"]
    h = energy.statistics({"filters": r})["filters"]
    # f = sum_k sum_x lambda_k(r) = |D| sum_{k,b} w_{k,b} H_{k,b}
    torch.testing.assert_close(energy(x), 24 * 24 * (h * energy.weights["filters"]).sum((1, 2)))
    # lambda_k is a ramped step function: its slope at r is (w_n - w_{n-1}) / bin width, n the nearest edge
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(xx).sum(), xx)
    assert grad.abs().sum() > 0


def test_histogram_energy_gradient_in_w_is_h_syn_minus_h_obs():
    energy = fitted_stationary()
    obs, syn = texture(24, 4), torch.cat([texture(32, 5), texture(32, 6)])  # the canvas may be larger
    feats_obs, feats_syn = energy.features(obs), energy.features(syn)
    energy.contrastive_loss(feats_obs, feats_syn).backward()
    h_obs = energy.statistics(feats_obs)["filters"].mean(0)
    h_syn = energy.statistics(feats_syn)["filters"].mean(0)
    torch.testing.assert_close(energy.weights["filters"].grad, h_syn - h_obs)


def test_histogram_energy_needs_its_bins():
    energy = LinearStationaryEnergy(FilterBank(**SMALL))
    with pytest.raises(RuntimeError, match="bins are not set"):
        energy(texture(24))
    with pytest.raises(ValueError, match="softness"):
        LinearStationaryEnergy(FilterBank(**SMALL), softness=2.0)


# -- eq. (6)-(7): the non-stationary energy --------------------------------------------------------
@pytest.mark.parametrize("rectify, h", [("abs", torch.abs), ("relu", torch.relu)])
def test_nonstationary_energy_is_eq_7_and_its_gradient_eq_13(rectify, h):
    bank = FilterBank(**SMALL, padding="zeros")
    energy = filled_weights(LinearNonStationaryEnergy(bank, image_size=24, rectify=rectify))
    x = torch.cat([texture(24, 7), texture(24, 8)])
    w = energy.weights["filters"]
    torch.testing.assert_close(energy(x), (w * h(bank(x)["filters"])).sum((1, 2, 3)))
    obs, syn = texture(24, 9), texture(24, 10)
    energy.contrastive_loss(energy.features(obs), energy.features(syn)).backward()
    torch.testing.assert_close(-w.grad, (h(bank(obs)["filters"]) - h(bank(syn)["filters"]))[0])


# -- filter pursuit ---------------------------------------------------------------------------------
def test_pick_takes_the_unused_filter_with_the_largest_normalised_gap():
    h_obs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    h_syn = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.6, 0.4]])
    gaps = histogram_gaps(h_obs, h_syn)
    torch.testing.assert_close(gaps, torch.tensor([0.0, 1.0, 0.4]))
    assert pick(gaps, []) == 1 and pick(gaps, [1]) == 2


def test_pursuit_picks_the_filter_that_sees_the_difference():
    # Observed: vertical stripes; "synthesized": the same image transposed. Intensities, the
    # isotropic DoG and the diagonal Gabors give the same histograms on both: only the Gabors at
    # 0 and 90 degrees tell them apart, so the pursuit must pick one of those.
    energy = LinearStationaryEnergy(FilterBank(**SMALL), bins=8)
    x = torch.arange(24.0)
    stripes = (60 * torch.cos(2 * math.pi * x / 6.0) + 5 * torch.cos(2 * math.pi * x / 4.0)).expand(24, 24)[None, None]
    energy.fit(stripes)
    h = {name: energy.statistics(energy.features(img))["filters"] for name, img in
         (("obs", stripes), ("syn", stripes.transpose(-1, -2)))}
    gaps = histogram_gaps(h["obs"], h["syn"])
    names = energy.extractor.names
    blind = [k for k, n in enumerate(names) if not ("_o0_" in n or "_o90_" in n)]
    assert gaps[blind].max() < 1e-4 < gaps.max()
    assert "_o0_" in names[pick(gaps, [])] or "_o90_" in names[pick(gaps, [])]


class PursuitData(pl.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.images = ((texture(24, 11) + 115) / 255).clamp(0, 1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader([self.images[0]] * 4, batch_size=1)


def small_model(filters):
    bank = FilterBank(scales=(1.0,), orientations=2, dog_scales=(1.0,), filters=filters)
    sampler = LangevinSampler(step_size=3.0, n_steps=2, sigma=1000.0, clamp=True, precision="fp32", channels_last=False)
    energy = LinearStationaryEnergy(bank, bins=8)
    return FrameModel(energy, sampler, partial(ChainBuffer, n_chains=1), image_size=24, optimizer=partial(torch.optim.SGD, lr=1.0))


def test_pursuit_adds_filters_one_by_one_and_keeps_the_chains(tmp_path):
    pursuit = FilterPursuit(small_model, PursuitData(), iterations=2, average=2,
                            trainer_options={"default_root_dir": str(tmp_path)})
    steps = pursuit.run(3)
    assert len({s.filter for s in steps}) == 3 and all(s.filter in pursuit.names for s in steps)
    assert all(0 <= s.unused_mean <= s.unused_max <= 1 for s in steps)
    assert steps[-1].samples.shape == (1, 3, 24, 24)


def test_pursuit_measures_the_histograms_averaged_over_sweeps(monkeypatch):
    pursuit = FilterPursuit(small_model, PursuitData(), average=3)
    model = pursuit.candidates
    # a sampler whose every sweep brightens the chains by 10 grey levels
    monkeypatch.setattr(model.sampler, "sample", lambda energy, x, **kwargs: x + 10)
    chains = pursuit.observed.clone()
    h_syn, after = pursuit.measure(model, model.energy, chains)
    expected = sum(pursuit.histograms(chains + 10 * i) for i in range(3)) / 3
    torch.testing.assert_close(h_syn, expected)
    torch.testing.assert_close(after, chains + 20)
    assert not torch.allclose(h_syn, pursuit.histograms(chains))  # the sweeps moved the histograms


def test_pursuit_starts_from_the_reference_itself(monkeypatch):
    # sigma 1000 clamped to [black, white]: q(I) is nearly uniform there (sd = range / sqrt(12))
    pursuit = FilterPursuit(small_model, PursuitData())
    x = pursuit.reference_chains()
    lo, hi = (float(b) for b in pursuit.candidates.input_space.bounds())
    assert lo <= float(x.min()) < lo + 5 and hi - 5 < float(x.max()) <= hi
    assert float(x.std()) == pytest.approx((hi - lo) / math.sqrt(12), rel=0.1)
    # sigma 1, unclamped: N(0, 1) per pixel (eq. 8)
    monkeypatch.setattr(pursuit.candidates.sampler, "clamp", False)
    monkeypatch.setattr(pursuit.candidates.sampler, "sigma", 1.0)
    x = pursuit.reference_chains()
    assert float(x.std()) == pytest.approx(1.0, rel=0.1) and abs(float(x.mean())) < 0.15


def mean_response_model(channels=None):
    """A deep stationary model (eq. 10) on a small bank with zero padding (so the mean responses
    are not all 0), with only ``channels`` free (all with None): ChannelPursuit's fixture."""
    bank = FilterBank(scales=(1.0,), orientations=2, dog_scales=(1.0,), padding="zeros")
    sampler = LangevinSampler(step_size=3.0, n_steps=2, sigma=1000.0, clamp=True, precision="fp32", channels_last=False)
    model = FrameModel(StationaryEnergy(bank), sampler, partial(ChainBuffer, n_chains=1), image_size=24,
                       optimizer=partial(torch.optim.SGD, lr=1e-3))
    return model if channels is None else free_channels(model, channels)


def test_free_channels_masks_every_other_weight():
    model = mean_response_model(["filters/1"])
    x = texture(24, 4)
    model.energy(x).sum().backward()
    grad = model.energy.weights["filters"].grad
    assert grad[1] != 0 and grad[[0, 2, 3, 4, 5]].abs().max() == 0
    with pytest.raises(ValueError, match="unknown channel"):
        mean_response_model(["conv9/1"])


def test_channel_pursuit_normalises_the_mean_gap_by_the_observed_sd(tmp_path):
    built = []
    pursuit = ChannelPursuit(lambda c: built.append(mean_response_model(c)) or built[-1], PursuitData(), iterations=2,
                             trainer_options={"default_root_dir": str(tmp_path)})
    assert pursuit.names == tuple(f"filters/{k}" for k in range(6))
    energy, chains = pursuit.candidates.energy, texture(24, 9)
    with torch.no_grad():
        r_obs, r_syn = (energy.features(x)["filters"][0].flatten(1) for x in (pursuit.observed, chains))
    sd = r_obs.std(1, unbiased=False)
    expected = (r_obs.mean(1) - r_syn.mean(1)).abs() / sd.clamp_min(0.1 * float(sd.mean()))
    torch.testing.assert_close(pursuit.gaps(chains), expected)
    steps = pursuit.run(2)
    chosen = [pursuit.names.index(s.filter) for s in steps]
    others = [k for k in range(6) if k not in chosen]
    assert len(set(chosen)) == 2 and built[-1].energy.weights["filters"][others].abs().max() == 0
    assert built[-1].energy.weights["filters"][chosen].abs().min() > 0


def test_pursuit_command_draws_the_bank_and_names_bad_values(tmp_path):
    import numpy as np
    from PIL import Image

    from frame.cli.pursuit import main

    image = tmp_path / "texture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)).save(image)
    assert main(["--input", str(image), "--out", str(tmp_path / "out"), "--filters", "0", "--size", "32"]) == 0
    assert (tmp_path / "out" / "bank.png").is_file()
    assert main(["--texture", str(image), "--out", str(tmp_path / "old"), "--filters", "0", "--size", "32"]) == 0
    assert (tmp_path / "old" / "bank.png").is_file()  # the flag's older name still works
    assert main(["--input", str(image), "--out", str(tmp_path / "out"), "--filters", "-1"]) == 2
    assert main(["--input", str(tmp_path / "nothing.png"), "--out", str(tmp_path / "none"), "--filters", "0"]) == 2
    assert not (tmp_path / "none").exists()  # nothing written for a missing texture
    # a folder is an input too, and --out may not lie inside it (the grids would become textures)
    folder = tmp_path / "textures"
    folder.mkdir()
    image.rename(folder / image.name)
    assert main(["--input", str(folder), "--out", str(folder / "grids"), "--filters", "0", "--size", "32"]) == 2
    assert not (folder / "grids").exists()
    assert main(["--input", str(folder), "--out", str(tmp_path / "from_folder"), "--filters", "0", "--size", "32"]) == 0
