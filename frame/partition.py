"""log Z(w) of a FRAME model by annealed importance sampling (AIS) from q to p.

    Z(w) = E_q[ exp f(I; w) ]          for p(I; w) = exp(f(I; w)) q(I) / Z(w)    (eq. 8, 24)

The Bayes classifier of eq. (4) needs log Z(w_c) of every category's model; learning never
does (Algorithm 1 only compares statistics). AIS (Neal, 2001) walks from q to p through the
tempered models p_b(I) ~ exp(b f(I; w)) q(I), 0 = b_0 < b_1 < ... < b_T = 1:

    I_0 ~ q,    log W += (b_t - b_{t-1}) f(I_{t-1}; w),    I_t ~ T_t(I_{t-1}, .)

with T_t a transition that leaves p_{b_t} invariant. Then E[W] = Z(w) exactly, and
log Z ~ log mean(W) over the chains. AIS rather than thermodynamic integration because q is
the Gaussian white noise of eq. (8), sampled exactly, so the chains need no burn-in at b = 0,
and because the estimate of Z itself is unbiased for any number of temperatures (thermodynamic
integration, log Z = int_0^1 E_b[f] db, is biased by each E_b[f] taken from chains that
have not reached p_b). The transitions are the project's Langevin step (eq. 16) on the tempered
potential U_b = -b f + ||I||^2 / (2 sigma^2), with a Metropolis-Hastings correction (MALA):
without it a Langevin step leaves a slightly different distribution invariant and E[W] would
no longer be Z. A step costs one forward and backward pass, as in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from frame.sampling import EnergyFn, LangevinSampler


@dataclass
class LogZEstimate:
    """An AIS estimate of log Z(w) from `n` chains.

    ``stderr`` is the delta-method standard error of log mean(W) over the chains,
    sd(W) / (sqrt(n) mean(W)), reliable only when ``ess`` (the effective number of chains,
    (sum W)^2 / sum W^2) is not far below n: when one chain carries all the weight (ESS 1) it
    is 1 whatever the true error, and only independent runs (other seeds) measure the spread.
    ``acceptance`` is the mean Metropolis-Hastings acceptance of the transitions; ``chains`` the
    chains at the walk's end (forward: at b = 1, weighted by W they are samples of p).
    """

    log_z: float
    stderr: float
    ess: float
    acceptance: float
    log_weights: Tensor
    chains: Tensor | None = None


def summarise(log_weights: Tensor, acceptance: float = 1.0, chains: Tensor | None = None) -> LogZEstimate:
    """log mean(W), its standard error and the effective sample size from log W per chain."""
    log_weights = log_weights.double()
    n = log_weights.numel()
    log_z = float(torch.logsumexp(log_weights, 0) - math.log(n))
    w = torch.exp(log_weights - log_weights.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    stderr = float(w.std(unbiased=True) / (w.mean() * math.sqrt(n))) if n > 1 else float("inf")
    return LogZEstimate(log_z, stderr, ess, acceptance, log_weights, chains)


def temperatures(n: int) -> Tensor:
    """b_0 = 0 < ... < b_n = 1, evenly spaced (float64): each temperature adds the same share of f."""
    if n < 1:
        raise ValueError(f"the number of AIS temperatures must be >= 1, got {n}")
    return torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)


def _log_target(f: Tensor, x: Tensor, beta: float, sigma: float) -> Tensor:
    """log p_b(I) up to its constant: b f(I) - ||I||^2 / (2 sigma^2), per chain (float64)."""
    return beta * f.double() - x.double().flatten(1).square().sum(1) / (2 * sigma**2)


def _log_proposal(to: Tensor, frm: Tensor, drift: Tensor, step_size: float) -> Tensor:
    """log N(to; frm + (delta^2 / 2) drift, delta^2) up to its constant, per chain (float64)."""
    mean = frm.double() + 0.5 * step_size**2 * drift.double()
    return -(to.double() - mean).flatten(1).square().sum(1) / (2 * step_size**2)


def annealed_log_z(
    energy: EnergyFn,
    sampler: LangevinSampler,
    shape: tuple[int, ...],
    n_chains: int = 16,
    n_temperatures: int = 100,
    steps_per_temperature: int = 1,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    metropolis: bool = True,
    start: Tensor | None = None,
) -> LogZEstimate:
    """AIS estimate of log Z = log E_q[exp f(I)] for q = N(0, sigma^2) on images of `shape` (C, H, W).

    Args:
        energy: f(I; w) per chain [B] of chains [B, *shape] in the input space.
        sampler: gives sigma (the reference q), the Langevin step size and the chains' layout;
            the network runs in fp32 whatever its precision (f reaches 1e6 and more: bf16 would
            round it by thousands, far beyond the acceptance ratio's tolerance).
        n_chains: independent AIS chains (the estimate averages their weights).
        n_temperatures: T, the number of steps from b = 0 to b = 1 (``temperatures``).
        steps_per_temperature: Metropolis-adjusted Langevin steps at each b.
        step_size: delta of those steps (default: the sampler's).
        generator: the random stream (the start I_0 ~ q, the proposals, the accept draws).
        metropolis: accept or reject each Langevin step (MALA, exact). ``False`` keeps every step,
            as training's sampler does: the chains move at any acceptance, but each T_t leaves a
            distribution slightly off p_b invariant, so E[W] = Z only up to that error;
            ``acceptance`` still reports the rate MALA would have had, a gauge of that error.
        start: chains [n_chains, *shape] that sample p (e.g. a trained model's persistent chains):
            the walk then runs backwards, from p at b = 1 to q at b = 0, and mean(W) estimates 1/Z
            (reverse AIS). Forward AIS errs low in log Z (Jensen: E log mean W <= log Z), reverse
            AIS from true samples of p errs high, so the two bracket log Z (Grosse et al., 2015).
    """
    if n_chains < 1 or steps_per_temperature < 1:
        raise ValueError(f"AIS needs n_chains >= 1 and steps_per_temperature >= 1, got {n_chains} and {steps_per_temperature}")
    exact = LangevinSampler(step_size=step_size or sampler.step_size, sigma=sampler.sigma, precision="fp32",
                            channels_last=sampler.channels_last)
    delta, sigma = exact.step_size, exact.sigma
    if start is None:
        x = exact.prepare(sigma * torch.randn((n_chains, *shape), generator=generator, device=device))
    else:
        x, n_chains = exact.prepare(start.to(device)), len(start)
    f, grad = exact.energy_grad(energy, x)
    betas = temperatures(n_temperatures).tolist()[:: 1 if start is None else -1]
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=device)
    accepted = 0.0
    for previous, beta in zip(betas[:-1], betas[1:]):
        log_w += (beta - previous) * f.double()
        drift = exact.drift(x, beta * grad)
        for _ in range(steps_per_temperature):
            noise = torch.randn(x.shape, generator=generator, device=device)
            proposal = exact.prepare(x + 0.5 * delta**2 * drift + delta * noise)
            f_new, grad_new = exact.energy_grad(energy, proposal)
            drift_new = exact.drift(proposal, beta * grad_new)
            log_ratio = (_log_target(f_new, proposal, beta, sigma) + _log_proposal(x, proposal, drift_new, delta)
                         - _log_target(f, x, beta, sigma) - _log_proposal(proposal, x, drift, delta))
            u = torch.rand(n_chains, generator=generator, device=device, dtype=torch.float64)
            accept = torch.log(u) < log_ratio
            accepted += float(accept.double().mean())
            if not metropolis:
                accept = torch.ones_like(accept)
            keep = accept.view(-1, *([1] * len(shape)))
            x = torch.where(keep, proposal, x)
            f, grad, drift = torch.where(accept, f_new, f), torch.where(keep, grad_new, grad), torch.where(keep, drift_new, drift)
    estimate = summarise(log_w, accepted / (n_temperatures * steps_per_temperature), x.detach())
    if start is not None:  # mean(W) estimates 1/Z: log Z = -log mean(W), with the same standard error
        estimate.log_z = -estimate.log_z
    return estimate
