"""Filter pursuit (Section 3; Zhu, Wu and Mumford's minimax entropy): grow FRAME filter by filter.

Start from no filter (the reference model alone); at each step, among the filters of the bank not
yet in the model, add the one whose statistics are farthest from the data's under the current
samples, then fit the enlarged model by Algorithm 1, warm-starting from the current weights and
chains:

    k* = argmax_{k unused} d_k,   d_k = 1/2 || H_obs,k - H_syn,k ||_1

The histograms H are normalised to sum 1 (fractions of positions per bin, over each filter's own
bins), so d_k is the total-variation distance between the observed and synthesized marginal
histograms of filter k, in [0, 1] whatever the filter's scale or response range; the FRAME
papers pick by this L1 distance between normalised histograms (the "filter pursuit" criterion;
the quadratic form of minimax entropy's information gain is the second-order version of it).

``pursue`` works on any energy with per-filter histogram statistics over one layer of a bank
whose subset is chosen by the extractor's ``filters`` option (``frame.energies.LinearStationaryEnergy``
on ``frame.nets.FilterBank``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch import Tensor

from frame.models.base import FrameModel


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
        trainer_options: extra ``pl.Trainer`` arguments (e.g. ``accelerator``).
    """

    def __init__(
        self,
        make_model: Callable[[Sequence[str] | None], FrameModel],
        datamodule: pl.LightningDataModule,
        iterations: int = 30,
        trainer_options: dict | None = None,
    ) -> None:
        self.make_model, self.datamodule, self.iterations = make_model, datamodule, int(iterations)
        self.trainer_options = trainer_options or {}
        self.datamodule.setup("fit")
        self.candidates = make_model(None)
        self.names: tuple[str, ...] = tuple(self.candidates.energy.extractor.names)
        self.observed = self.candidates.to_input(self.datamodule.images)
        self.candidates.input_space.fit(self.datamodule.images)
        self.candidates.energy.fit(self.observed)

    @torch.no_grad()
    def gaps(self, chains: Tensor) -> Tensor:
        """d_k of every filter of the bank between the observed images and the chains."""
        energy = self.candidates.energy
        layer = energy.extractor.layers[0]
        h_obs = energy.statistics(energy.features(self.observed))[layer]
        h_syn = energy.statistics(energy.features(chains.to(self.observed)))[layer]
        return histogram_gaps(h_obs, h_syn)

    def reference_chains(self) -> Tensor:
        """Samples with no filter: the sampler on f = 0 (the reference q(I) alone), as long as a fit."""
        model = self.candidates
        model.buffer.refresh(self.observed, model.input_space)
        steps = self.iterations * model.sampler.n_steps
        bounds = model.input_space.bounds(self.observed.device)
        zero = lambda x: (x * 0).flatten(1).sum(1)  # noqa: E731
        return model.sampler.sample(zero, model.buffer.chains, bounds=bounds, n_steps=steps, generator=model.buffer.generator())

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
        chains = self.reference_chains()
        steps: list[PursuitStep] = []
        for i in range(1, int(n_filters) + 1):
            start = time.perf_counter()
            gaps = self.gaps(chains)
            best = pick(gaps, chosen)
            chosen.append(best)
            new = self.make_model([self.names[k] for k in chosen])
            _carry_over(model, new, chains)
            self.fit(new)
            model, chains = new, new.buffer.chains.detach().clone()
            after = self.gaps(chains)
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


@torch.no_grad()
def _carry_over(old: FrameModel | None, new: FrameModel, chains: Tensor) -> None:
    """Warm start: the kept filters' weights (rows) and the chains with their random stream."""
    if old is not None:
        layer = new.energy.extractor.layers[0]
        kept = old.energy.weights[layer]
        new.energy.weights[layer][: kept.shape[0]].copy_(kept)
        new.buffer.load_state_dict(old.buffer.state_dict())
    else:
        new.buffer.chains.copy_(chains)
        new.buffer.initialised.fill_(True)
