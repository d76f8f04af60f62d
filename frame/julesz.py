"""The Julesz ensemble sampler (paper, Appendix B, eq. 30-32): images whose statistics equal the data's.

Instead of learning the weights of a FRAME model, sample the ensemble of images whose statistics
H(I) (those a FRAME energy matches: histograms of linear filters, spatial means of VGG responses)
equal the observed ones, by annealing

    p_T(I) ~ exp(-|D| M(I) / T),   M(I) = sum_l ||H_l(I) - H_obs,l||^2 / ||H_obs,l||^2     (eq. 32)

with Langevin dynamics while T falls to 0 (the relative mismatch M puts every layer on the same
scale; |D|, the number of pixels, makes its gradient per pixel independent of the canvas). Each
temperature runs the shared sampler (``frame.sampling.LangevinSampler``, eq. 16) on the
"energy" f = -|D| M / T with step delta_T = sqrt(2 eps T): the drift eps |D| M'(I) is the same
at every T and only the noise, sqrt(2 eps T) Z, anneals; the last level is T = 0, gradient
descent (as Gatys et al., [10]) with the sampler's noiseless step and a backtracking eps. The reference q(I) of the sampler is kept nearly uniform (a
large sigma), as Appendix B assumes, and pixels stay within [black, white] (``clamp``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from frame.energies.base import Energy
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
        eps: gradient step on |D| M (the drift per step is eps |D| M'(I)).
        t_start, t_end: the geometric schedule of temperatures, from t_start down to t_end,
            followed by one level at T = 0 (gradient descent).
        levels: temperatures with noise (the T = 0 level comes on top).
        steps_per_level: Langevin steps at each temperature.
        final_steps: gradient steps at T = 0 (the slow part: M is quadratic near its minimum).
        sigma: sd of the reference q(I) (large: nearly uniform).
        clamp: keep pixels inside [black, white].
        precision: the sampler's precision (``fp32`` to match statistics to < 1%).
    """

    def __init__(
        self,
        eps: float = 2000.0,
        t_start: float = 1.0,
        t_end: float = 1e-3,
        levels: int = 4,
        steps_per_level: int = 50,
        final_steps: int = 400,
        sigma: float = 1000.0,
        clamp: bool = True,
        precision: str = "fp32",
    ) -> None:
        if not eps > 0 or not t_start >= t_end > 0:
            raise ValueError(f"julesz: need eps > 0 and t_start >= t_end > 0, got {eps}, {t_start}, {t_end}")
        self.eps, self.t_start, self.t_end = float(eps), float(t_start), float(t_end)
        self.levels, self.steps_per_level, self.final_steps = int(levels), int(steps_per_level), int(final_steps)
        self.sigma, self.clamp, self.precision = float(sigma), bool(clamp), precision

    def temperatures(self) -> list[float]:
        """The noisy levels, geometric from t_start to t_end, then 0."""
        if self.levels == 1:
            return [self.t_start, 0.0]
        ratio = (self.t_end / self.t_start) ** (1 / (self.levels - 1))
        return [self.t_start * ratio**i for i in range(self.levels)] + [0.0]

    @torch.no_grad()
    def observed_statistics(self, energy: Energy, observed: Tensor) -> dict[str, Tensor]:
        """H_obs per layer: the statistics averaged over the observed images (eq. 30, 31)."""
        return {k: v.float().mean(0) for k, v in energy.statistics(energy.features(observed)).items()}

    def sample(
        self, energy: Energy, start: Tensor, h_obs: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> Tensor:
        """Anneals the chains `start` (input space) towards the ensemble of `h_obs`."""
        bounds = energy.input_space.bounds(start.device, start.dtype)
        x = start
        for t in self.temperatures()[:-1]:
            sampler = self.sampler(t, self.steps_per_level, noise=True)
            x = sampler.sample(Mismatch(energy, h_obs, t), x, bounds=bounds, generator=generator)
        return self.descend(Mismatch(energy, h_obs, self.t_end), x, bounds)

    def sampler(self, t: float, n_steps: int, noise: bool) -> LangevinSampler:
        """The shared sampler at temperature t: step sqrt(2 eps T), so the drift is eps |D| M'."""
        return LangevinSampler(
            step_size=math.sqrt(2 * self.eps * t), n_steps=n_steps, sigma=self.sigma, noise=noise,
            clamp=self.clamp, precision=self.precision, channels_last=False,
        )

    def descend(self, mismatch: Mismatch, x: Tensor, bounds: tuple[Tensor, Tensor]) -> Tensor:
        """T = 0: gradient descent on M with the sampler's noiseless step, backtracking.

        A step that raises M is undone and eps halved (M is steep along some filters and flat
        along others: a fixed eps that is stable everywhere crawls); an accepted step grows it 10%.
        """
        sampler = self.sampler(mismatch.temperature, 1, noise=False)
        f, grad = sampler.energy_grad(mismatch, x)
        for _ in range(self.final_steps):
            y = sampler.step(sampler.prepare(x), grad, bounds=bounds)
            f_new, grad_new = sampler.energy_grad(mismatch, y)
            if f_new.sum() >= f.sum():  # f = -|D| M / T: higher is a smaller mismatch
                x, f, grad = y, f_new, grad_new
                sampler.step_size *= math.sqrt(1.1)
            else:
                sampler.step_size /= math.sqrt(2)
        return x.detach()

    @torch.no_grad()
    def gap(self, energy: Energy, x: Tensor, h_obs: dict[str, Tensor]) -> float:
        """||H(I) - H_obs|| / ||H_obs|| over all layers, H averaged over the chains."""
        stats = self.observed_statistics(energy, x)
        diff = sum((stats[k] - h).pow(2).sum() for k, h in h_obs.items())
        return float((diff / sum(h.pow(2).sum() for h in h_obs.values())).sqrt())
