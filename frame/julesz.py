"""The Julesz ensemble sampler (paper, Appendix B, eq. 30-32): images whose statistics equal the data's.

Instead of learning the weights of a FRAME model, sample the ensemble of images whose statistics
H(I) (those a FRAME energy matches: histograms of linear filters, spatial means of VGG responses)
equal the observed ones, by annealing

    p_T(I) ~ exp(-|D| M(I) / T),   M(I) = sum_l ||H_l(I) - H_obs,l||^2 / ||H_obs,l||^2     (eq. 32)

with Langevin dynamics while T falls to 0 (the relative mismatch M puts every layer on the same
scale; |D|, the number of pixels, makes its gradient per pixel independent of the canvas). Each
temperature runs the shared sampler (``frame.sampling.LangevinSampler``, eq. 16) on the
"energy" f = -|D| M / T with step delta_T = sqrt(2 eps T): the drift eps |D| M'(I) is the same
at every T and only the noise, sqrt(2 eps T) Z, anneals; the last level is T = 0, descent on M
by L-BFGS (as Gatys et al., [10]; ``JuleszSampler.descend``). The reference q(I) of the sampler is
kept nearly uniform (a large sigma), as Appendix B assumes, and pixels stay within [black, white]
(``clamp``).

Scaled to the observed contrast. The histogram bins of a filter span its observed responses
(``LinearStationaryEnergy.fit``), so on a texture of contrast s (the sd of its pixels) M'(I) scales
as 1/s and its curvature as 1/s^2. ``eps`` is therefore per unit of s^2 (the drift is
eps s^2 |D| M'(I)): the same step, and a noise sqrt(2 eps s^2 T) in proportion to s, on a faint
texture and a contrasted one. The chains start from white noise with the observed mean and sd.
The noise stays small (t_start 1e-2: 0.16 s per step): a response thrown past its filter's outer
bin sits where M has no gradient (the outer bins are open), and the histogram's tails then
cannot be matched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from frame.energies.base import Energy
from frame.progress import progress_bar
from frame.sampling import LangevinSampler


class Mismatch:
    """-|D| M(I) / T of an energy's statistics against the observed ones, as a sampler energy."""

    def __init__(self, energy: Energy, h_obs: dict[str, Tensor], temperature: float) -> None:
        self.energy, self.h_obs, self.temperature = energy, h_obs, float(temperature)

    def relative(self, x: Tensor) -> Tensor:
        """M(I) per image [B]."""
        stats = self.energy.statistics(self.energy.features(x))
        terms = [
            (stats[layer].float() - h).flatten(1).pow(2).sum(1) / h.pow(2).sum().clamp_min(1e-12)
            for layer, h in self.h_obs.items()
        ]
        return torch.stack(terms).sum(0)

    def __call__(self, x: Tensor) -> Tensor:
        return -(x.shape[-2] * x.shape[-1]) * self.relative(x) / self.temperature


class JuleszSampler:
    """Annealed Langevin on the statistics mismatch (module docstring).

    Args:
        eps: gradient step on |D| M per unit of the observed images' variance s^2 (the drift per
            step is eps s^2 |D| M'(I)).
        t_start, t_end: the geometric schedule of temperatures, from t_start down to t_end,
            followed by one level at T = 0 (gradient descent).
        levels: temperatures with noise (the T = 0 level comes on top; 0: descent only).
        steps_per_level: Langevin steps at each temperature.
        final_steps: evaluations of M and M' at T = 0 (L-BFGS, ``descend``), all rounds together.
        projections: rounds of L-BFGS at T = 0, each ended by clamping into [black, white].
        history: L-BFGS memory (pairs of steps and gradient changes).
        sigma: sd of the reference q(I) (large: nearly uniform).
        clamp: keep pixels inside [black, white].
        precision: the sampler's precision (``fp32`` to match statistics to < 1%).
    """

    def __init__(
        self,
        eps: float = 1.25,
        t_start: float = 1e-2,
        t_end: float = 1e-4,
        levels: int = 4,
        steps_per_level: int = 50,
        final_steps: int = 400,
        projections: int = 4,
        history: int = 20,
        sigma: float = 1000.0,
        clamp: bool = True,
        precision: str = "fp32",
    ) -> None:
        if not eps > 0 or not t_start >= t_end > 0:
            raise ValueError(f"julesz: need eps > 0 and t_start >= t_end > 0, got {eps}, {t_start}, {t_end}")
        if min(levels, steps_per_level, final_steps) < 0 or min(projections, history) < 1:
            raise ValueError(f"julesz: need levels, steps_per_level, final_steps >= 0 and projections, history >= 1, got "
                             f"{levels}, {steps_per_level}, {final_steps}, {projections}, {history}")
        self.eps, self.t_start, self.t_end = float(eps), float(t_start), float(t_end)
        self.levels, self.steps_per_level, self.final_steps = int(levels), int(steps_per_level), int(final_steps)
        self.projections, self.history = int(projections), int(history)
        self.sigma, self.clamp, self.precision = float(sigma), bool(clamp), precision

    def temperatures(self) -> list[float]:
        """The noisy levels, geometric from t_start to t_end, then 0."""
        if self.levels <= 1:
            return [self.t_start] * self.levels + [0.0]
        ratio = (self.t_end / self.t_start) ** (1 / (self.levels - 1))
        return [self.t_start * ratio**i for i in range(self.levels)] + [0.0]

    @torch.no_grad()
    def observed_statistics(self, energy: Energy, observed: Tensor) -> dict[str, Tensor]:
        """H_obs per layer: the statistics averaged over the observed images (eq. 30, 31)."""
        return {k: v.float().mean(0) for k, v in energy.statistics(energy.features(observed)).items()}

    def start(self, energy: Energy, observed: Tensor, n: int = 1, size: int | None = None,
              generator: torch.Generator | None = None) -> Tensor:
        """n white-noise images (side ``size``, default the observed one) with the observed mean
        and sd, inside [black, white]."""
        shape = (n, observed.shape[1], size or observed.shape[-2], size or observed.shape[-1])
        noise = torch.randn(shape, generator=generator, device=observed.device)
        lo, hi = energy.input_space.bounds(observed.device, observed.dtype)
        return (observed.mean() + observed.std() * noise).clamp(lo, hi)

    def sample(self, energy: Energy, observed: Tensor, n: int = 1, size: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n samples (input space) of the Julesz ensemble of the observed images' statistics."""
        h_obs = self.observed_statistics(energy, observed)
        start = self.start(energy, observed, n, size, generator)
        return self.anneal(energy, start, h_obs, float(observed.std()), generator)

    def anneal(self, energy: Energy, start: Tensor, h_obs: dict[str, Tensor], contrast: float,
               generator: torch.Generator | None = None) -> Tensor:
        """Anneals the chains ``start`` (input space) towards the ensemble of ``h_obs``; ``contrast``
        is s, the observed images' sd (the step is eps s^2)."""
        eps = self.eps * contrast**2
        bounds = energy.input_space.bounds(start.device, start.dtype)
        x = start
        for t in progress_bar(self.temperatures()[:-1], "annealing", unit="level"):
            sampler = self.sampler(eps, t, self.steps_per_level, noise=True)
            x = sampler.sample(Mismatch(energy, h_obs, t), x, bounds=bounds, generator=generator)
        return self.descend(eps, Mismatch(energy, h_obs, self.t_end), x, bounds)

    def sampler(self, eps: float, t: float, n_steps: int, noise: bool) -> LangevinSampler:
        """The shared sampler at temperature t: step sqrt(2 eps T), so the drift is eps |D| M'."""
        return LangevinSampler(
            step_size=math.sqrt(2 * eps * t), n_steps=n_steps, sigma=self.sigma, noise=noise,
            clamp=self.clamp, precision=self.precision, channels_last=False,
        )

    def descend(self, eps: float, mismatch: Mismatch, x: Tensor, bounds: tuple[Tensor, Tensor]) -> Tensor:
        """T = 0: M minimised by L-BFGS (as Gatys et al., [10]), ``final_steps`` evaluations of M'.

        Why L-BFGS and not the sampler's gradient step: M is steep along some statistics and flat
        along others, and a gradient step stable on the steep ones crawls on the flat ones; L-BFGS
        rescales by the curvature it measures. It is unconstrained, so the descent runs in
        ``projections`` rounds, each ended by clamping the pixels into [black, white] (``clamp``).
        The first step of a round is the sampler's T = 0 drift, eps |D| M'(I) (L-BFGS caps its
        first step's L1 norm at its learning rate, so that rate is set to the drift's L1 norm;
        later steps take the quasi-Newton step, rate 1). The reference's pull, I / sigma^2, is left
        out: q(I) is uniform in Appendix B.
        """
        if self.final_steps == 0:
            return x.detach()
        per_round = max(1, self.final_steps // self.projections)
        pixels = x.shape[-2] * x.shape[-1]
        with torch.enable_grad():
            for _ in progress_bar(range(self.projections), "L-BFGS at T = 0", unit="round"):
                x = x.detach().float().requires_grad_(True)
                norm = float(torch.autograd.grad(mismatch.relative(x).sum(), x)[0].abs().sum())
                if norm == 0:  # matched exactly
                    break
                optimizer = torch.optim.LBFGS(
                    [x], lr=eps * pixels * norm, max_iter=1, max_eval=per_round, history_size=self.history,
                    tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe",
                )

                def closure() -> Tensor:
                    optimizer.zero_grad()
                    loss = mismatch.relative(x).sum() / norm  # |M'(start)|_1 = 1: the first step is the drift
                    loss.backward()
                    return loss

                optimizer.step(closure)
                optimizer.param_groups[0].update(lr=1.0, max_iter=per_round)
                optimizer.step(closure)
                x = x.detach()
                if self.clamp:
                    x = torch.maximum(torch.minimum(x, bounds[1]), bounds[0])
        return x.detach()

    @torch.no_grad()
    def gap(self, energy: Energy, x: Tensor, h_obs: dict[str, Tensor]) -> float:
        """||H(I) - H_obs|| / ||H_obs|| over all layers, H averaged over the chains."""
        stats = self.observed_statistics(energy, x)
        diff = sum((stats[k] - h).pow(2).sum() for k, h in h_obs.items())
        return float((diff / sum(h.pow(2).sum() for h in h_obs.values())).sqrt())
