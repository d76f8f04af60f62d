"""Filter pursuit (Section 3; Zhu, Wu and Mumford's minimax entropy): grow FRAME filter by filter.

Start from no filter (the reference model alone); at each step, among the filters of the bank not
yet in the model, add the one whose statistics are farthest from the data's under the current
samples, then fit the enlarged model by Algorithm 1, warm-starting from the current weights and
chains:

    k* = argmax_{k unused} d_k,   d_k = 1/2 || H_obs,k - H_syn,k ||_1

H_syn is the model's expected histogram, estimated by averaging the chains' histograms over a few
sweeps of the sampler at the fitted weights (``average``). The histograms H are normalised to sum
1 (fractions of positions per bin, over each filter's own bins), so d_k is the total-variation
distance between the observed and synthesized marginal histograms of filter k, in [0, 1] whatever
the filter's scale or response range; the FRAME papers pick by this L1 distance between
normalised histograms (the "filter pursuit" criterion; the quadratic form of minimax entropy's
information gain is the second-order version of it).

``FilterPursuit`` works on any energy with per-filter histogram statistics over one layer of a
bank whose subset is chosen by the extractor's ``filters`` option
(``frame.energies.LinearStationaryEnergy`` on ``frame.nets.FilterBank``). ``ChannelPursuit`` runs
the same loop over the channels of a deep stationary model (eq. 10), whose statistics are means.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import Tensor

from frame.models.base import FrameModel
from frame.progress import progress_bar


def histogram_gaps(h_obs: Tensor, h_syn: Tensor) -> Tensor:
    """d_k = 1/2 ||H_obs,k - H_syn,k||_1 for histograms [K, bins] (or [N, K, bins], averaged)."""
    if h_obs.dim() == 3:
        h_obs, h_syn = h_obs.mean(0), h_syn.mean(0)
    return 0.5 * (h_obs - h_syn).abs().sum(-1)


def pick(gaps: Tensor, chosen: Sequence[int]) -> int:
    """The unused filter with the largest gap."""
    masked = gaps.clone().float()
    masked[list(chosen)] = -float("inf")
    if torch.isinf(masked).all():
        raise ValueError("every filter of the bank is already in the model")
    return int(masked.argmax())


@dataclass
class PursuitStep:
    """One step: the filter added, its gap when picked, the gaps after fitting, the samples."""

    filter: str
    gap_picked: float
    unused_mean: float
    unused_max: float
    used_mean: float
    minutes: float
    samples: Tensor  # images in [0, 1] after fitting


class FilterPursuit:
    """Filter pursuit over a bank, fitting with ``pytorch_lightning`` (Algorithm 1, ``FrameModel``).

    Args:
        make_model: builds the model with the given filters (names, in order) or, with None,
            with the whole bank (only its statistics are used: the candidates).
        datamodule: the observed images (``frame.data.ImageDataModule``).
        iterations: learning iterations after each addition.
        average: sweeps of the sampler (its ``n_steps`` each, weights fixed) whose chains'
            histograms are averaged into H_syn when the gaps are measured (1: the chains as they are).
        trainer_options: extra ``pl.Trainer`` arguments (e.g. ``accelerator``).
    """

    def __init__(
        self,
        make_model: Callable[[Sequence[str] | None], FrameModel],
        datamodule: pl.LightningDataModule,
        iterations: int = 30,
        average: int = 1,
        trainer_options: dict | None = None,
    ) -> None:
        if int(average) < 1:
            raise ValueError(f"pursuit: average must be >= 1 sweep, got {average}")
        self.make_model, self.datamodule, self.iterations = make_model, datamodule, int(iterations)
        self.average = int(average)
        self.trainer_options = trainer_options or {}
        self.datamodule.setup("fit")
        self.candidates = make_model(None)
        self.names: tuple[str, ...] = self.candidate_names()
        self.observed = self.candidates.to_input(self.datamodule.images)
        self.candidates.input_space.fit(self.datamodule.images)
        self.candidates.energy.fit(self.observed)

    def candidate_names(self) -> tuple[str, ...]:
        """The bank's filters, in bank order."""
        return tuple(self.candidates.energy.extractor.names)

    @torch.no_grad()
    def histograms(self, chains: Tensor) -> Tensor:
        """Every bank filter's histograms of the images ``chains`` [K, bins], averaged over them."""
        energy = self.candidates.energy
        return energy.statistics(energy.features(chains.to(self.observed)))[energy.extractor.layers[0]].mean(0)

    def gaps(self, chains: Tensor, h_syn: Tensor | None = None) -> Tensor:
        """d_k of every filter of the bank between the observed images and the chains (or H_syn)."""
        return histogram_gaps(self.histograms(self.observed), self.histograms(chains) if h_syn is None else h_syn)

    def measure(self, model: FrameModel, energy: Callable[[Tensor], Tensor], chains: Tensor) -> tuple[Tensor, Tensor]:
        """H_syn of ``energy`` averaged over ``average`` sweeps of ``model``'s sampler continuing
        ``chains`` (weights fixed), and the chains after them. One snapshot of one chain carries
        the chain's drift around the model's mean statistics; the average estimates E_p[H]."""
        bounds = model.input_space.bounds(chains.device)
        total = self.histograms(chains)
        for _ in range(self.average - 1):
            chains = model.sampler.sample(energy, chains, bounds=bounds, generator=model.buffer.generator())
            total = total + self.histograms(chains)
        return total / self.average, chains.detach()

    @torch.no_grad()
    def reference_chains(self) -> Tensor:
        """Samples with no filter, drawn exactly from the reference q(I) = N(0, sigma^2) per pixel
        (eq. 8), restricted to [black, white] when the sampler clamps (sigma 1000: nearly uniform,
        the original FRAME's start). Running the sampler on f = 0 instead would start the pursuit
        from a random walk that has not reached q: its first pick would depend on its length."""
        model = self.candidates
        shape = model.buffer.chains.shape
        sigma = model.sampler.sigma
        lo, hi = (b.expand(1, *shape[1:]) for b in model.input_space.bounds(self.observed.device))
        if not model.sampler.clamp:
            lo, hi = torch.full_like(lo, -torch.inf), torch.full_like(hi, torch.inf)
        cdf_lo, cdf_hi = torch.special.ndtr(lo / sigma), torch.special.ndtr(hi / sigma)
        u = torch.rand(shape, generator=model.buffer.generator(self.observed.device), device=self.observed.device)
        return sigma * torch.special.ndtri(cdf_lo + (cdf_hi - cdf_lo) * u)

    def carry_over(self, old: FrameModel | None, new: FrameModel, chains: Tensor) -> None:
        """Warm start of the enlarged model from the last one (or from ``chains``, the reference's)."""
        _carry_over(old, new, chains)

    def fit(self, model: FrameModel) -> None:
        options = dict(
            max_steps=self.iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[], num_sanity_val_steps=0,
        )
        pl.Trainer(**{**options, **self.trainer_options}).fit(model, datamodule=self.datamodule)

    def run(self, n_filters: int, on_step: Callable[[int, PursuitStep], None] | None = None) -> list[PursuitStep]:
        """Adds `n_filters` filters one by one; `on_step(i, step)` after each (1-based)."""
        chosen: list[int] = []
        model: FrameModel | None = None
        h_syn, chains = self.measure(self.candidates, _zero, self.reference_chains())
        steps: list[PursuitStep] = []
        for i in progress_bar(range(1, int(n_filters) + 1), "filter pursuit", unit="filter"):
            start = time.perf_counter()
            gaps = self.gaps(chains, h_syn)
            best = pick(gaps, chosen)
            chosen.append(best)
            new = self.make_model([self.names[k] for k in chosen])
            self.carry_over(model, new, chains)
            self.fit(new)
            model = new
            h_syn, chains = self.measure(model, model.energy, model.buffer.chains.detach().clone())
            model.buffer.update(chains)
            after = self.gaps(chains, h_syn)
            unused = [k for k in range(len(self.names)) if k not in chosen]
            step = PursuitStep(
                filter=self.names[best],
                gap_picked=float(gaps[best]),
                unused_mean=float(after[unused].mean()) if unused else 0.0,
                unused_max=float(after[unused].max()) if unused else 0.0,
                used_mean=float(after[chosen].mean()),
                minutes=(time.perf_counter() - start) / 60,
                samples=model.to_images(chains).cpu(),
            )
            steps.append(step)
            if on_step is not None:
                on_step(i, step)
        return steps


class ChannelPursuit(FilterPursuit):
    """The same pursuit over the channels of a deep stationary FRAME model (eq. 10).

    Channel k's statistic is its spatial mean response H_k (eq. 14), one number, so its gap is
    normalised by the observed sd of the channel's responses over positions,

        d_k = |H_obs,k - H_syn,k| / sd_obs,k      (sd_obs,k at least a tenth of its layer's mean sd),

    whose square is, up to a factor, the second-order information gain of adding the channel (the
    quadratic form of minimax entropy, for a mean statistic). Candidates are named ``layer/k``.
    ``make_model(channels)`` builds the model with every layer and only those channels' weights
    free (``free_channels``); with None, all of them (the candidates).
    """

    def candidate_names(self) -> tuple[str, ...]:
        weights = self.candidates.energy.weights
        return tuple(f"{layer}/{k}" for layer, w in weights.items() for k in range(w.numel()))

    @torch.no_grad()
    def histograms(self, chains: Tensor) -> Tensor:
        """Every candidate channel's spatial mean response [K], averaged over ``chains``."""
        energy = self.candidates.energy
        stats = energy.statistics(energy.features(chains.to(self.observed)))
        return torch.cat([stats[layer].float().mean(0).flatten() for layer in energy.weights])

    def gaps(self, chains: Tensor, h_syn: Tensor | None = None) -> Tensor:
        if not hasattr(self, "sd"):
            energy = self.candidates.energy
            with torch.no_grad():
                feats = energy.features(self.observed)
                sds = [energy.response_variance(feats[layer].float()).sqrt() for layer in energy.weights]
                # a channel silent on the texture is measured in a tenth of its layer's mean sd, not in ~0
                self.sd = torch.cat([sd.clamp_min(0.1 * float(sd.mean()) + 1e-6) for sd in sds])
        h = self.histograms(chains) if h_syn is None else h_syn
        return (self.histograms(self.observed) - h).abs() / self.sd

    def carry_over(self, old: FrameModel | None, new: FrameModel, chains: Tensor) -> None:
        _carry_over(old, new, chains)  # same shapes: every weight is copied, the masks stay the new model's


def free_channels(model: FrameModel, channels: Sequence[str]) -> FrameModel:
    """Keeps every weight of a deep stationary model at its value (0 from the start) but those of
    ``channels`` (``layer/k``): their gradients are masked, so a plain SGD step leaves them."""
    for layer, w in model.energy.weights.items():
        mask = torch.zeros_like(w)
        for name in channels:
            chosen_layer, k = name.rsplit("/", 1)
            if chosen_layer not in model.energy.weights:
                raise ValueError(f"unknown channel {name!r}: the layers are {', '.join(model.energy.weights)}")
            if chosen_layer == layer:
                mask.view(-1)[int(k)] = 1.0
        w.register_hook(lambda grad, mask=mask: grad * mask.to(grad))
    return model


def _zero(x: Tensor) -> Tensor:
    """f = 0: the reference model, no filter."""
    return (x * 0).flatten(1).sum(1)


@torch.no_grad()
def _carry_over(old: FrameModel | None, new: FrameModel, chains: Tensor) -> None:
    """Warm start: the kept filters' weights (rows) and the chains with their random stream."""
    if old is not None:
        for layer, kept in old.energy.weights.items():
            new.energy.weights[layer][: kept.shape[0]].copy_(kept)
        new.buffer.load_state_dict(old.buffer.state_dict())
    else:
        new.buffer.chains.copy_(chains)
        new.buffer.initialised.fill_(True)
