"""The deep FRAME energies (eq. 9, 10) and the learning gradient (eq. 13, 14)."""

import pytest
import torch

from frame.energies import NonStationaryEnergy, StationaryEnergy


def filled_weights(energy, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in energy.weights.values():
            w.copy_(torch.randn(w.shape, generator=g))
    return energy


def test_weights_start_at_zero(tiny_extractor):
    # Algorithm 1, step 2: w^(0) = 0, so f(I; w) = 0 everywhere.
    energy = NonStationaryEnergy(tiny_extractor, image_size=8)
    assert all(torch.count_nonzero(w) == 0 for w in energy.weights.values())
    assert torch.equal(energy(torch.rand(2, 3, 8, 8)), torch.zeros(2))


def test_nonstationary_energy_is_eq_9(tiny_extractor):
    energy = filled_weights(NonStationaryEnergy(tiny_extractor, image_size=8))
    x = torch.rand(3, 3, 8, 8)
    feats = tiny_extractor(x)
    by_hand = sum((energy.weights[l] * feats[l]).sum(dim=(1, 2, 3)) for l in ("a", "b"))
    torch.testing.assert_close(energy(x), by_hand)


def test_stationary_energy_is_eq_10_at_any_canvas_size(tiny_extractor):
    energy = filled_weights(StationaryEnergy(tiny_extractor))
    for size in (8, 13):
        x = torch.rand(2, 3, size, size)
        feats = tiny_extractor(x)
        by_hand = sum((energy.weights[l][None, :, None, None] * feats[l]).sum(dim=(1, 2, 3)) for l in ("a", "b"))
        torch.testing.assert_close(energy(x), by_hand)


def test_nonstationary_loss_gradient_is_eq_13(tiny_extractor):
    energy = filled_weights(NonStationaryEnergy(tiny_extractor, image_size=8))
    obs, syn = torch.rand(5, 3, 8, 8), torch.rand(4, 3, 8, 8)
    feats_obs, feats_syn = tiny_extractor(obs), tiny_extractor(syn)
    energy.contrastive_loss(feats_obs, feats_syn).backward()
    for layer in ("a", "b"):
        h_obs = feats_obs[layer].mean(0)  # (1/n) sum_i [F_k * I_i](x)
        h_syn = feats_syn[layer].mean(0)  # (1/n~) sum_i [F_k * I~_i](x)
        # descent on the loss = ascent along H_obs - H_syn (eq. 13)
        torch.testing.assert_close(-energy.weights[layer].grad, h_obs - h_syn)


def test_stationary_loss_gradient_is_eq_14(tiny_extractor):
    energy = filled_weights(StationaryEnergy(tiny_extractor))
    obs, syn = torch.rand(1, 3, 8, 8), torch.rand(3, 3, 12, 12)  # the canvas may be larger
    feats_obs, feats_syn = tiny_extractor(obs), tiny_extractor(syn)
    energy.contrastive_loss(feats_obs, feats_syn).backward()
    for layer in ("a", "b"):
        d_obs = feats_obs[layer].shape[-1] * feats_obs[layer].shape[-2]
        d_syn = feats_syn[layer].shape[-1] * feats_syn[layer].shape[-2]
        h_obs = feats_obs[layer].sum(dim=(-2, -1)).mean(0) / d_obs  # (1/|D|) sum_x, eq. (14)
        h_syn = feats_syn[layer].sum(dim=(-2, -1)).mean(0) / d_syn
        torch.testing.assert_close(-energy.weights[layer].grad, h_obs - h_syn)


def test_sgd_step_is_the_update_of_algorithm_1(tiny_extractor):
    energy = filled_weights(NonStationaryEnergy(tiny_extractor, image_size=8))
    before = {k: w.detach().clone() for k, w in energy.weights.items()}
    obs, syn = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    feats_obs, feats_syn = tiny_extractor(obs), tiny_extractor(syn)
    gamma = 0.01
    opt = torch.optim.SGD(energy.weights.parameters(), lr=gamma)
    energy.contrastive_loss(feats_obs, feats_syn).backward()
    opt.step()
    for layer in ("a", "b"):
        expected = before[layer] + gamma * (feats_obs[layer].mean(0) - feats_syn[layer].mean(0))
        torch.testing.assert_close(energy.weights[layer].detach(), expected)


def test_nonstationary_rejects_other_canvas_sizes(tiny_extractor):
    energy = NonStationaryEnergy(tiny_extractor, image_size=8)
    with pytest.raises(ValueError, match="canvas must equal the training image size"):
        energy(torch.rand(1, 3, 10, 10))


def test_variance_preconditioner_is_inverse_variance(tiny_extractor):
    energy = NonStationaryEnergy(tiny_extractor, image_size=8)
    feats = tiny_extractor(torch.rand(6, 3, 8, 8))
    factors = energy.variance_preconditioner(feats, eps=1e-9)
    var = feats["a"].var(0, unbiased=False)
    alive = var > 1e-3 * var.mean()
    product = (factors["a"] * var)[alive]
    torch.testing.assert_close(product, torch.full_like(product, product[0].item()), rtol=1e-3, atol=1e-6)
    assert factors["a"].mean().item() == pytest.approx(1.0, rel=1e-5)


def test_layer_preconditioner_equalises_the_layers_variances(tiny_extractor):
    # Section 5.1 per layer: factor_l * mean variance_l is the same for every layer, and the layer
    # with the largest variance keeps the configured rate (a one-layer model is unchanged).
    energy = NonStationaryEnergy(tiny_extractor, image_size=8)
    feats = tiny_extractor(torch.rand(6, 3, 8, 8))
    feats["b"] = feats["b"] * 10.0  # make the layers' scales differ by 100x in variance
    factors = energy.layer_preconditioner(feats)
    variances = {layer: feats[layer].var(0, unbiased=False).mean().item() for layer in ("a", "b")}
    largest = max(variances, key=variances.get)
    assert factors[largest].item() == pytest.approx(1.0)
    products = [factors[layer].item() * variances[layer] for layer in ("a", "b")]
    assert products[0] == pytest.approx(products[1], rel=1e-5)
    assert min(f.item() for f in factors.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_weighted_sum_has_the_gradients_of_the_plain_expression(channels_last):
    from frame.energies.deep_frame import WeightedSum

    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    stat = torch.rand(3, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    w = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(WeightedSum.apply, (stat, w))
    reference = (stat * w).flatten(1).sum(1)
    torch.testing.assert_close(WeightedSum.apply(stat, w), reference)

    # bf16 maps (the Langevin gradient under autocast): the value is summed in fp32, the map's
    # gradient is w in the map's dtype and memory format, the weights' gradient in fp32
    maps = stat.detach().to(torch.bfloat16).contiguous(memory_format=layout).requires_grad_(True)
    weights = w.detach().float().requires_grad_(True)
    value = WeightedSum.apply(maps, weights)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, (maps.float() * weights).flatten(1).sum(1), rtol=1e-5, atol=1e-5)
    per_image = torch.tensor([1.0, 2.0, -0.5])
    grad_maps, grad_weights = torch.autograd.grad(value, (maps, weights), per_image)
    assert grad_maps.dtype == torch.bfloat16 and grad_maps.is_contiguous(memory_format=layout)
    torch.testing.assert_close(grad_maps.float(), (per_image.view(-1, 1, 1, 1) * weights.to(torch.bfloat16).float()),
                               rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad_weights, (per_image.view(-1, 1, 1, 1) * maps.float()).sum(0))


def _energy_classes():
    import frame.energies as energies
    from frame.energies.base import Energy

    abstract = (Energy, energies.DeepFrameEnergy)
    return sorted({c for c in vars(energies).values() if isinstance(c, type) and issubclass(c, Energy) and c not in abstract},
                  key=lambda c: c.__name__)


def test_energies_that_say_they_are_linear_in_their_features_are():
    """FrameModel keeps only the observed features' batch mean for these energies: the mean of
    f_l and of the statistics over a batch must then equal those of the mean features."""
    from tests.tiny import TinyExtractor

    linear = [c for c in _energy_classes() if c.linear_in_features]
    assert {c.__name__ for c in linear} == {"NonStationaryEnergy", "StationaryEnergy", "TopLayerEnergy"}
    for cls in linear:
        energy = cls(TinyExtractor(), 8) if cls.positional else cls(TinyExtractor())
        with torch.no_grad():
            for w in energy.weights.values():
                w.normal_()
        feats = energy.features(torch.randn(5, 3, 8, 8))
        mean = {k: v.mean(0, keepdim=True) for k, v in feats.items()}
        for layer, f in energy.layer_energies(feats).items():
            torch.testing.assert_close(energy.layer_energies(mean)[layer], f.mean(0, keepdim=True), rtol=1e-5, atol=1e-4)
        for layer, h in energy.statistics(feats).items():
            torch.testing.assert_close(energy.statistics(mean)[layer], h.mean(0, keepdim=True))
