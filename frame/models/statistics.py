"""What Algorithm 1 reports each iteration: how far the dreams' statistics are from the data's.

    train/gap_rel          = ||H_obs - H_syn|| / ||H_obs||   over all layers (0 when matched)
    train/gap_rel/<layer>  the same per layer
    train/energy_obs|syn   mean f(I; w) of observed / synthesized images, and per layer

H are the per-image statistics the learning rule matches (eq. 13, 14, 21, 27), averaged over
the batch and over processes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from frame.energies.base import Energy


@torch.no_grad()
def statistics_gap(
    energy: Energy,
    feats_obs: dict[str, Tensor],
    feats_syn: dict[str, Tensor],
    reduce: Callable[[Tensor], Tensor] = lambda value: value,
) -> dict[str, Tensor]:
    """The metrics above; `reduce` averages a value over processes (identity in one)."""
    h_obs = {k: reduce(v.float().mean(0)) for k, v in energy.statistics(feats_obs).items()}
    h_syn = {k: reduce(v.float().mean(0)) for k, v in energy.statistics(feats_syn).items()}
    metrics: dict[str, Tensor] = {}
    gap_sq, obs_sq = 0.0, 0.0
    for layer in h_obs:
        diff, ref = (h_obs[layer] - h_syn[layer]).norm() ** 2, h_obs[layer].norm() ** 2
        metrics[f"train/gap_rel/{layer}"] = (diff / ref.clamp_min(1e-12)).sqrt()
        gap_sq, obs_sq = gap_sq + diff, obs_sq + ref
    metrics["train/gap_rel"] = (gap_sq / obs_sq.clamp_min(1e-12)).sqrt()
    for name, feats in (("obs", feats_obs), ("syn", feats_syn)):
        energies = {k: reduce(v.float().mean()) for k, v in energy.layer_energies(feats).items()}
        metrics[f"train/energy_{name}"] = sum(energies.values())
        metrics.update({f"train/energy_{name}/{k}": v for k, v in energies.items()})
    return metrics
