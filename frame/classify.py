"""The Bayes classifier of top-layer FRAME models, and the soft-max classifier it equals (eq. 24, 4).

One model of eq. (24) per category c, p(I | c) = exp(w_c . F(I)) q(I) / Z(w_c), all on the same
top-layer features F(I) and the same reference q, with prior frequencies prior_c, give by the
Bayes rule

    p(c | I) = prior_c p(I | c) / sum_c' prior_c' p(I | c')
             = exp(l_c(I)) / sum_c' exp(l_c'(I)),   l_c(I) = w_c . F(I) + log prior_c - log Z(w_c)

q(I) cancels: this is the discriminative ConvNet of eq. (3)-(4), with the top layer's weights
w_c and the bias b_c = log prior_c - log Z(w_c). ``bayes_posterior`` computes the first line
from each model's log-likelihood log p(I | c) = f(I; w_c) + log q(I) - log Z(w_c); ``logits``
the second from the pooled features and the stacked weights, so that the two can be checked
against each other. log Z(w_c) comes from ``frame.partition`` (annealed importance sampling).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from frame.energies.top_layer import TopLayerEnergy
from frame.models.base import FrameModel
from frame.partition import LogZEstimate, annealed_log_z
from frame.synthesis import canvas_side


def check_category_models(models: Mapping[str, FrameModel], origin: Mapping[str, str] | None = None) -> None:
    """Refuses models that are not top-layer FRAME models on the same features and reference q.

    The soft-max form of eq. (4) shares F(I) among the categories, and q must be the same for it
    to cancel: same filters (weights and taps), image size, grey or colour, and sigma.
    `origin` names where each model came from (e.g. ``--model face=face.ckpt``) in the messages.
    """
    origin = origin or {name: name for name in models}
    if len(models) < 2:
        raise ValueError(f"the Bayes classifier needs models of at least two categories, got {len(models)}")
    first_name, first = next(iter(models.items()))
    for name, model in models.items():
        if not isinstance(model.energy, TopLayerEnergy):
            raise ValueError(f"{origin[name]} holds a {type(model.energy).__name__}: the classifier needs top-layer "
                             "FRAME models (train them with model=top_layer)")
        if name == first_name:
            continue
        mismatch = [what for what, a, b in (
            ("image size", canvas_side(model), canvas_side(first)),
            ("channels (grey or colour)", model.input_space.channels, first.input_space.channels),
            ("sigma of q", model.sampler.sigma, first.sampler.sigma),
            ("filters", repr(model.energy.extractor), repr(first.energy.extractor)),
        ) if a != b]
        theirs, ours = model.energy.extractor.state_dict(), first.energy.extractor.state_dict()
        if not mismatch and (theirs.keys() != ours.keys() or not all(torch.equal(theirs[k], ours[k]) for k in ours)):
            mismatch.append("filter weights")
        if mismatch:
            raise ValueError(f"{origin[name]} and {origin[first_name]} differ in their {', '.join(mismatch)}: the "
                             "categories' models must share the top-layer features and q (eq. 4)")


def model_log_z(
    model: FrameModel, n_chains: int = 16, n_temperatures: int = 200, steps_per_temperature: int = 1,
    generator: torch.Generator | None = None, **options: Any,
) -> LogZEstimate:
    """log Z(w) of a model on its own canvas, by AIS from its reference q (``frame.partition``;
    `options`: ``step_size``, ``metropolis``, ``start`` of ``annealed_log_z``)."""
    chains = model.buffer.chains
    return annealed_log_z(model.energy, model.sampler, tuple(chains.shape[1:]), n_chains, n_temperatures,
                          steps_per_temperature, generator=generator, device=chains.device, **options)


def log_reference(x: Tensor, sigma: float) -> Tensor:
    """log q(I) of the Gaussian reference N(0, sigma^2) (eq. 8), normalised, per image [N] (float64)."""
    flat = x.double().flatten(1)
    return -flat.square().sum(1) / (2 * sigma**2) - 0.5 * flat.shape[1] * math.log(2 * math.pi * sigma**2)


def normalised_priors(names: list[str], priors: Mapping[str, float] | None = None) -> Tensor:
    """prior_c for every category in the order of `names` (float64, sum 1); uniform by default.

    Priors are frequencies: any positive numbers, normalised to sum 1; every category needs one.
    """
    if not priors:
        return torch.full((len(names),), 1.0 / len(names), dtype=torch.float64)
    unknown = [name for name in priors if name not in names]
    if unknown:
        raise ValueError(f"a prior for {unknown[0]!r}, which is not a category (categories: {', '.join(names)})")
    missing = [name for name in names if name not in priors]
    if missing:
        raise ValueError(f"no prior for category {missing[0]!r}: give every category a prior, or none (uniform)")
    values = torch.tensor([float(priors[name]) for name in names], dtype=torch.float64)
    if not torch.isfinite(values).all() or (values <= 0).any():
        raise ValueError(f"priors must be positive numbers, got {dict(priors)}")
    return values / values.sum()


@torch.no_grad()
def top_layer_features(model: FrameModel, images: Tensor, batch_size: int = 64) -> tuple[Tensor, dict[str, Tensor]]:
    """The inputs x of RGB or grey images in [0, 1] and their top-layer responses (fp32, in batches,
    on the model's device)."""
    device = model.buffer.chains.device
    inputs, maps = [], []
    for i in range(0, len(images), batch_size):
        x = model.to_input(images[i : i + batch_size].to(device))
        inputs.append(x)
        maps.append(model.energy.features(x))
    return torch.cat(inputs), {layer: torch.cat([m[layer] for m in maps]) for layer in maps[0]}


@torch.no_grad()
def log_likelihoods(models: Mapping[str, FrameModel], x: Tensor, feats: dict[str, Tensor], log_z: Tensor) -> Tensor:
    """log p(I | c) = f(I; w_c) + log q(I) - log Z(w_c) [N, C] (float64), f from each model's energy."""
    log_q = log_reference(x, next(iter(models.values())).sampler.sigma)
    maps = {layer: feat.double() for layer, feat in feats.items()}
    columns = [torch.stack(list(model.energy.layer_energies(maps).values())).sum(0) for model in models.values()]
    return torch.stack(columns, 1).double() + log_q[:, None] - log_z.double().to(x.device)[None, :]


def bayes_posterior(log_likelihood: Tensor, priors: Tensor) -> Tensor:
    """p(c | I) = prior_c p(I | c) / sum_c' prior_c' p(I | c') [N, C], from log p(I | c) [N, C]."""
    log_joint = log_likelihood + priors.to(log_likelihood.device).log()[None, :]
    return torch.exp(log_joint - torch.logsumexp(log_joint, 1, keepdim=True))


@torch.no_grad()
def logits(models: Mapping[str, FrameModel], feats: dict[str, Tensor], priors: Tensor, log_z: Tensor) -> Tensor:
    """The scores of eq. (3)-(4): w_c . F(I) + log prior_c - log Z(w_c) [N, C] (float64)."""
    features = next(iter(models.values())).energy.feature_vector({layer: feat.double() for layer, feat in feats.items()})
    weights = torch.stack([model.energy.weight_vector() for model in models.values()]).double().to(features.device)
    return features @ weights.T + (priors.log() - log_z.double()).to(features.device)[None, :]
