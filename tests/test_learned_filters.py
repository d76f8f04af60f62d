"""Learned filters: the generative ConvNet (eq. 17-22) and nets learned from scratch (eq. 25-27)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from frame.buffer import ChainBuffer
from frame.energies import GConvNetEnergy, ScratchEnergy
from frame.energies.scratch import FACE_NET
from frame.input_space import CAFFE_MEAN, PixelSpace
from frame.models import FrameModel
from frame.sampling import LangevinSampler
from frame.schedules import log_decay, log_decay_factor
from frame.scoring import roc_auc


def gconvnet(extractor, **kwargs) -> GConvNetEnergy:
    torch.manual_seed(0)
    kwargs = {"n_filters": 3, "kernel_size": 3, "init_std": 0.3, **kwargs}
    return GConvNetEnergy(extractor, **kwargs)


def test_gconvnet_energy_is_eq_20_with_17(tiny_extractor):
    energy = gconvnet(tiny_extractor, padding=1)
    x = torch.rand(2, 3, 8, 8)
    feat = tiny_extractor(x)["b"]  # the deepest tap by default
    by_hand = torch.relu(F.conv2d(feat, energy.filters.weight, energy.filters.bias, padding=1)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(energy(x), by_hand)
    # the initial weights are small random, N(0, init_std^2), and the biases 0
    fresh = GConvNetEnergy(tiny_extractor, n_filters=50, kernel_size=3)
    assert fresh.filters.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.count_nonzero(fresh.filters.bias) == 0


def test_gconvnet_local_max_pooling_before_the_filters(tiny_extractor):
    energy = gconvnet(tiny_extractor, layer="a", pool_size=2, padding=0)
    x = torch.rand(2, 3, 8, 8)
    pooled = F.max_pool2d(tiny_extractor(x)["a"], 2)
    torch.testing.assert_close(energy.features(x)["a"], pooled)
    assert energy.pre_activations(energy.features(x)).shape == (2, 3, 2, 2)  # 4x4 pooled, 3x3 valid filters
    with pytest.raises(ValueError, match="smaller than"):
        energy.features(torch.rand(1, 3, 4, 4))


def test_detector_map_is_the_indicator_of_a_positive_pre_activation(tiny_extractor):
    energy = gconvnet(tiny_extractor, layer="a", stride=2)
    with torch.no_grad():
        energy.filters.bias.copy_(torch.tensor([0.2, -0.2, 0.0]))
    x = torch.rand(3, 3, 9, 9)
    feat = tiny_extractor(x)["a"]
    pre = F.conv2d(feat, energy.filters.weight, energy.filters.bias, stride=2, padding=1)
    delta = energy.detector_maps(x)
    assert delta.dtype == torch.bool and delta.shape == pre.shape
    assert torch.equal(delta, pre > 0)
    assert 0 < delta.float().mean() < 1  # some detections, not all
    # delta_{j,y} = h'(pre-activation), eq. (22): the derivative of f with respect to it
    pre = pre.detach().requires_grad_(True)
    torch.relu(pre).sum().backward()
    assert torch.equal(pre.grad, delta.float())


def test_gconvnet_learning_gradient_is_eq_21(tiny_extractor):
    energy = gconvnet(tiny_extractor, layer="a", padding=0)
    obs, syn = torch.rand(4, 3, 8, 8), torch.rand(3, 3, 8, 8)
    feats_obs, feats_syn = energy.features(obs), energy.features(syn)
    energy.contrastive_loss(feats_obs, feats_syn).backward()

    def expected(x):
        # mean over images of sum_y delta_{j,y}(I) [F_k * I](y + x), divided by |D|
        feat = tiny_extractor(x)["a"]
        patches = F.unfold(feat, 3)  # [B, K*3*3, |D|]
        delta = (F.conv2d(feat, energy.filters.weight, energy.filters.bias) > 0).flatten(2).float()  # [B, J, |D|]
        grad = torch.einsum("bjy,bky->jk", delta, patches) / len(x) / patches.shape[-1]
        return grad.view_as(energy.filters.weight)

    torch.testing.assert_close(-energy.filters.weight.grad, expected(obs) - expected(syn))


def test_gconvnet_gap_statistic_is_linear_in_the_matched_statistics(tiny_extractor):
    # H_j = f_j / |D| and ReLU is positively homogeneous: f_j = <theta_j, df_j/dtheta_j>,
    # so H_j agrees between data and samples wherever the eq. (21) statistics agree.
    energy = gconvnet(tiny_extractor, layer="a")
    with torch.no_grad():
        energy.filters.bias.normal_()
    feats = energy.features(torch.rand(1, 3, 8, 8))
    responses = energy.responses(feats)
    for j in range(energy.n_filters):
        w_grad, b_grad = torch.autograd.grad(responses[:, j].sum(), (energy.filters.weight, energy.filters.bias), retain_graph=True)
        inner = (w_grad[j] * energy.filters.weight[j]).sum() + b_grad[j] * energy.filters.bias[j]
        stat = energy.statistics(feats)["gconv"][0, j]
        torch.testing.assert_close(stat * responses.shape[-1] * responses.shape[-2], inner)


def test_face_net_is_the_papers_five_layers():
    energy = ScratchEnergy()  # defaults: Section 9's face net on 64x64 grey images
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in energy.convs] == [
        (96, 7, 3), (128, 5, 2), (256, 5, 2), (512, 5, 2)]
    assert [spec["filters"] for spec in FACE_NET] == [96, 128, 256, 512]
    assert energy.readout == "dense" and energy.readout_weight.shape == energy.top_shape
    x = torch.randn(2, 1, 64, 64)
    h = x
    for conv in energy.convs:
        h = torch.relu(conv(h))
    torch.testing.assert_close(energy(x), (h * energy.readout_weight).flatten(1).sum(1) + energy.readout_bias)


def test_scratch_activation_replaces_the_relu_of_eq_17():
    layers = [{"filters": 4, "kernel": 3, "stride": 2}, {"filters": 3, "kernel": 3, "stride": 2}]
    torch.manual_seed(0)
    energy = ScratchEnergy(layers, image_size=8, channels=1, readout="sum", init_std=0.5, activation="leaky_relu")
    x = torch.randn(2, 1, 8, 8)
    h = F.leaky_relu(energy.convs[0](x), 0.2)
    h = F.leaky_relu(energy.convs[1](h), 0.2)
    torch.testing.assert_close(energy(x), h.sum(dim=(1, 2, 3)))
    assert torch.equal(energy.detector_maps(x, 0), energy.convs[0](x) > 0)  # eq. (22) unchanged
    with pytest.raises(ValueError, match="model.energy.activation"):
        ScratchEnergy(layers, image_size=8, activation="tanh")


@pytest.mark.parametrize("readout", ["stationary", "sum"])
def test_stationary_readouts_work_on_any_canvas(readout):
    energy = ScratchEnergy([{"filters": 4, "kernel": 3, "stride": 2}], image_size=8, channels=3, readout=readout)
    for size in (8, 13):
        x = torch.randn(2, 3, size, size)
        h = torch.relu(energy.convs[0](x))
        w = energy.readout_weight if readout == "stationary" else torch.ones(4)
        b = energy.readout_bias * h.shape[-1] * h.shape[-2] if readout == "stationary" else 0.0
        torch.testing.assert_close(energy(x), torch.einsum("bchw,c->b", h, w) + b)


def test_grey_pixel_space_round_trip():
    space = PixelSpace(channels=1)
    rgb = torch.rand(2, 3, 5, 5)
    x = space.to_input(rgb)
    assert x.shape == (2, 1, 5, 5)
    torch.testing.assert_close(x, rgb.mean(1, keepdim=True) * 255 - space.mean)
    torch.testing.assert_close(space.to_images(x), rgb.mean(1, keepdim=True).expand(-1, 3, -1, -1))
    lo, hi = space.bounds()
    torch.testing.assert_close(hi - lo, torch.full((1, 1, 1, 1), 255.0))


def test_data_reference_mean_is_the_mean_training_image():
    images = torch.rand(6, 3, 8, 8)
    space = PixelSpace(channels=1, reference_mean="data", size=8, per_pixel=True)
    with pytest.raises(RuntimeError, match="reference_mean=data"):
        space.to_input(images)
    space.fit(images)
    x = space.to_input(images)
    torch.testing.assert_close(x.mean(0), torch.zeros(1, 8, 8), atol=1e-4, rtol=0)  # q(I) centred on the data
    torch.testing.assert_close(space.to_images(x), images.mean(1, keepdim=True).expand(-1, 3, -1, -1))
    lo, hi = space.bounds()
    assert lo.shape == (1, 1, 8, 8)
    torch.testing.assert_close(space.to_images(lo)[:, :1], torch.zeros(1, 1, 8, 8), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="image_size"):
        space.fit(torch.rand(2, 3, 16, 16))
    colour = PixelSpace(channels=3, reference_mean="data")  # per channel: a mean colour, BGR
    colour.fit(images)
    torch.testing.assert_close(colour.mean.flatten(), images.mean(dim=(0, 2, 3)).flip(0) * 255)


def test_scratch_checkpoints_without_a_saved_reference_mean_still_load():
    """Checkpoints from before model.energy.reference_mean (grey input space, no saved mean) load as grey."""
    energy = ScratchEnergy([{"filters": 2, "kernel": 3}], image_size=8)
    old = {k: v for k, v in energy.state_dict().items() if not k.startswith("input_space.")}
    fresh = ScratchEnergy([{"filters": 2, "kernel": 3}], image_size=8)
    fresh.load_state_dict(old)  # strict
    torch.testing.assert_close(fresh.convs[0].weight, energy.convs[0].weight)
    torch.testing.assert_close(fresh.input_space.mean, torch.full((1, 1, 1, 1), sum(CAFFE_MEAN) / 3))
    data = ScratchEnergy([{"filters": 2, "kernel": 3}], image_size=8, reference_mean="data")
    with pytest.raises(RuntimeError, match="input_space.mean"):  # a data mean cannot be guessed
        data.load_state_dict(old)


def test_image_mean_chains_are_flat_in_pixel_space_under_a_mean_image_reference():
    images = torch.rand(4, 3, 8, 8)
    space = PixelSpace(channels=1, reference_mean="data", size=8, per_pixel=True)
    space.fit(images)
    buffer = ChainBuffer(3, (1, 8, 8), init="image_mean")
    buffer.refresh(space.to_input(images), space)
    pixels = space.to_images(buffer.chains)
    assert pixels.std(dim=(-2, -1)).max() < 1e-5  # a constant image ...
    levels = images.mean(dim=(1, 2, 3))
    for level in pixels.mean(dim=(1, 2, 3)):  # ... at the average intensity of a training image
        assert (levels - level).abs().min() < 1e-5


def test_scratch_chains_have_the_nets_channels():
    energy = ScratchEnergy(layers=[{"filters": 2, "kernel": 3}], image_size=8, channels=1)
    model = FrameModel(energy, LangevinSampler(n_steps=1), buffer=partial(ChainBuffer, n_chains=3), image_size=8)
    assert model.buffer.chains.shape == (3, 1, 8, 8)
    assert model.to_images(model.buffer.chains).shape == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="canvas_size"):  # the dense readout is tied to positions
        FrameModel(energy, LangevinSampler(), image_size=8, canvas_size=12)
    stationary = ScratchEnergy(layers=[{"filters": 2, "kernel": 3}], image_size=8, readout="stationary")
    assert FrameModel(stationary, LangevinSampler(), image_size=8, canvas_size=12).buffer.chains.shape[-1] == 12


def test_frozen_layers_get_no_gradient_and_load_from_a_shallower_net():
    torch.manual_seed(0)
    one = ScratchEnergy([{"filters": 4, "kernel": 3, "stride": 2}], image_size=16)
    two = ScratchEnergy([{"filters": 4, "kernel": 3, "stride": 2}, {"filters": 5, "kernel": 3, "stride": 2}],
                        image_size=16, frozen_layers=1)
    assert two.load_layers({f"energy.{k}": v for k, v in one.state_dict().items()}) == 1
    torch.testing.assert_close(two.convs[0].weight, one.convs[0].weight)
    assert not any(p.requires_grad for p in two.convs[0].parameters())
    obs, syn = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    two.contrastive_loss(two.features(obs), two.features(syn)).backward()
    assert two.convs[0].weight.grad is None and two.convs[1].weight.grad is not None
    # the sampler still sees the gradient through the frozen layer
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    two(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_log_decay_is_piecewise_constant_and_log_spaced():
    factors = [log_decay_factor(t, every=10, total=30, final_factor=0.01) for t in range(35)]
    assert factors[:10] == [1.0] * 10
    assert factors[10:20] == [pytest.approx(0.1)] * 10
    assert factors[20:] == [pytest.approx(0.01)] * 15
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = log_decay(optimizer, every=10, total=30, final_factor=0.01)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.03)


def test_roc_auc_matches_torchmetrics():
    from torchmetrics.functional.classification import binary_auroc

    torch.manual_seed(0)
    pos, neg = torch.randint(3, 20, (50,)).double(), torch.randint(0, 15, (40,)).double()  # many ties
    expected = binary_auroc(torch.cat([pos, neg]) / 20, torch.cat([torch.ones(50), torch.zeros(40)]).long())
    assert roc_auc(pos, neg) == pytest.approx(expected.item(), abs=1e-6)
    assert roc_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert roc_auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
