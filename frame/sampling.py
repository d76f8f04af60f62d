"""The one Langevin sampler every FRAME variant uses (paper, eq. 15-16).

For an energy model p(I; w) = exp(f(I; w)) q(I) / Z(w) with the Gaussian white-noise
reference q(I) of eq. (8), the potential is

    U(I; w) = -f(I; w) + ||I||^2 / (2 sigma^2)                          (eq. 15)

and one Langevin step is

    I <- I - (delta^2 / 2) U'(I) + delta Z,      Z ~ N(0, 1)             (eq. 16)

Images here live in the *network's input space* (for the Caffe VGG: BGR, 0-255, minus the
mean colour), so `I = 0` is the mean image and sigma is measured in those units, as in the
authors' MatConvNet code.

Only dU/dI is taken (``torch.autograd.grad`` with respect to the chains), so the model's
weights never receive gradients while sampling. The chains are kept in float32; with
``precision="bf16"`` only the network runs under bf16 autocast (the prior term and the update
stay in fp32). ``precision="auto"`` (the default) takes bf16 only where the hardware runs it
faster than fp32: a CUDA GPU with bf16, or a CPU with AVX512_BF16 or AMX. On a CPU without them
(AVX2 alone, say: most laptops, AMD before Zen 4) oneDNN emulates bf16 and a convolution runs
~25x slower than in fp32, so ``auto`` runs fp32 there. With a ``mask`` (1 = free, 0 = fixed)
only the free pixels move: this is the conditional sampling of p(I_M | I_notM; w) used for image
recovery (Section 9).

On CPU, ``sample`` also makes the process reuse freed activation memory between steps
(``keep_freed_memory``: 10-30% of a step at 128-224 px, paid for with a higher resident footprint).
Measured and left out (no gain beyond noise, see bench/langevin.py): channels-last or bf16 copies of
the frozen network's weights, in-place ReLUs, and oneDNN's implicit bf16 for fp32 convs
(``torch.backends.mkldnn.conv.fp32_precision``, 2x slower than autocast here).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from frame.progress import progress_bar

if TYPE_CHECKING:
    from frame.energies.base import Energy

PRECISIONS = ("auto", "fp32", "bf16")

EnergyFn = Callable[[Tensor], Tensor]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt() parameters (malloc.h)
_freed_memory_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Lets the process reuse freed activation memory instead of handing it back to the OS.

    Every Langevin step frees and re-allocates the same large activations. glibc serves any
    block over 32 MB with a fresh ``mmap`` and unmaps it on ``free``, so on CPU each step
    page-faults and zeroes all of them again (measured here at 128 px, 16 chains, conv3_3:
    ~50,000 faults and ~10% of the step). With ``M_MMAP_MAX = 0`` and a high
    ``M_TRIM_THRESHOLD`` those blocks come from the heap and the next step reuses them; the
    price is that the process keeps its peak footprint resident. Process-wide, applied once
    (``LangevinSampler.sample`` calls it for CPU chains); a no-op off glibc, or with
    ``FRAME_KEEP_FREED_MEMORY=0``. Returns whether the setting is in effect.
    """
    global _freed_memory_kept
    if _freed_memory_kept is None:
        _freed_memory_kept = False
        if os.environ.get("FRAME_KEEP_FREED_MEMORY", "1") != "0":
            try:
                libc = ctypes.CDLL("libc.so.6")
                _freed_memory_kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                )
            except (OSError, AttributeError):  # not glibc
                pass
    return _freed_memory_kept


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast beats fp32 on ``device``: a CUDA GPU that supports bf16, or a CPU with
    AVX512_BF16 or AMX tiles (without them oneDNN emulates bf16 far slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def draw_noise(x: Tensor, generator: torch.Generator | None, rows: tuple[int, int] | None = None) -> Tensor:
    """Z ~ N(0, 1) for the chains `x`.

    With ``rows=(offset, total)``, `x` is rows offset..offset+len(x) of `total` chains split over
    processes: Z is drawn for all `total` chains from a generator that every process holds in
    the same state, and this shard's rows are kept. Each chain then sees the same noise whatever
    the number of processes, so a multi-process run equals the single-process one.
    """
    if rows is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    offset, total = rows
    z = torch.randn((total, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
    return z[offset : offset + x.shape[0]]


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def checked_step_size(value: object, key: str) -> float:
    """delta of eq. (16), a finite number > 0; `key` names the setting in the error."""
    if not (_real(value) and value > 0):
        raise ValueError(f"{key} must be a number > 0, got {value!r}")
    return float(value)


def checked_steps(value: object, key: str) -> int:
    """A number of Langevin steps, an integer >= 0; `key` names the setting in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    return int(value)


class DriftTrace:
    """How the chains moved over one ``sample`` call: glide, or hop back and forth.

    f is piecewise linear in I for a ReLU / max-pooling net, so its gradient jumps where a unit
    switches. While the chains travel, consecutive drifts -U'(I_t), -U'(I_t+1) point the same
    way (cosine near +1). Where they settle, U has kinks across which its gradient flips: the
    chains chatter, consecutive drifts point in opposite directions (cosine towards -1) and each
    step hops across a kink by (delta^2 / 2) |U'|, an amplitude that shrinks as delta^2. A cosine
    near -1 with hops well above the noise's delta means the hops, not the noise, make the
    chains' motion, and a smaller step size shrinks them. ``summary`` gives, as means over the
    steps of the call and over the chains (only the moving pixels count):

    - ``drift_cos``: the cosine between consecutive drifts (needs 2 steps or more);
    - ``move_rms``: the rms size of the noise-free move (delta^2 / 2) |U'| a value a step, in
      the input space's units (grey levels here), to set against the noise's delta.
    """

    def __init__(self, step_size: float, mask: Tensor | None = None) -> None:
        self.scale = 0.5 * step_size**2
        self.mask = mask
        self.previous: Tensor | None = None
        self.free: Tensor | int | None = None  # moving values per chain, counted at the first step
        self.cos_sum: Tensor | float = 0.0
        self.move_sum: Tensor | float = 0.0
        self.n_cos = self.n_move = 0

    @torch.no_grad()
    def add(self, drift: Tensor) -> None:
        d = drift if self.mask is None else drift * self.mask
        flat = d.flatten(1)
        if self.free is None:
            self.free = flat.shape[1] if self.mask is None else self.mask.expand_as(d).flatten(1).sum(1).clamp_min(1)
        self.move_sum = self.move_sum + (self.scale * (flat.square().sum(1) / self.free).sqrt()).mean()
        self.n_move += 1
        if self.previous is not None:
            cos = torch.nn.functional.cosine_similarity(flat, self.previous, dim=1, eps=1e-12)
            self.cos_sum = self.cos_sum + cos.mean()
            self.n_cos += 1
        self.previous = flat

    def summary(self) -> dict[str, Tensor]:
        out = {}
        if self.n_move:
            out["move_rms"] = torch.as_tensor(self.move_sum / self.n_move).detach().float()
        if self.n_cos:
            out["drift_cos"] = torch.as_tensor(self.cos_sum / self.n_cos).detach().float()
        return out


class LangevinSampler:
    """Runs `n_steps` of eq. (16) on a batch of chains.

    Args:
        step_size: delta in eq. (16) (the authors use 0.3).
        n_steps: Langevin steps per call (L in Algorithm 1: 30 objects, 10 textures).
        sigma: standard deviation of the reference distribution q(I), eq. (8).
        noise: add the delta * Z term; ``False`` gives gradient descent on U (GRADE).
        clamp: keep pixels inside the image range (``bounds`` passed to ``sample``).
        precision: ``"bf16"`` (network under bf16 autocast, chains in fp32), ``"fp32"``, or
            ``"auto"``: bf16 where the device runs it fast (``fast_bf16``), fp32 elsewhere.
        channels_last: run the network on channels-last tensors (faster convs on CPU and GPU).
    """

    def __init__(
        self,
        step_size: float = 0.3,
        n_steps: int = 30,
        sigma: float = 1.0,
        noise: bool = True,
        clamp: bool = False,
        precision: str = "auto",
        channels_last: bool = True,
    ) -> None:
        self.step_size = checked_step_size(step_size, "model.sampler.step_size")
        self.n_steps = checked_steps(n_steps, "model.sampler.n_steps")
        if not (_real(sigma) and sigma > 0):
            raise ValueError(f"model.sampler.sigma must be a number > 0, got {sigma!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"model.sampler.precision must be one of {PRECISIONS}, got {precision!r}")
        self.sigma = float(sigma)
        self.noise = bool(noise)
        self.clamp = bool(clamp)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self._slow_bf16_told = False
        #: what the chains did in the last ``sample`` call (``DriftTrace.summary``); empty before
        self.last_trace: dict[str, Tensor] = {}

    def precision_on(self, device: torch.device | str) -> str:
        """``fp32`` or ``bf16``: what the network runs in on ``device`` (``auto`` resolved)."""
        if self.precision == "auto":
            return "bf16" if fast_bf16(device) else "fp32"
        if self.precision == "bf16" and not self._slow_bf16_told and not fast_bf16(device):
            self._slow_bf16_told = True
            warnings.warn("model.sampler.precision=bf16 on a device that emulates bf16 (no AVX512_BF16, AMX or CUDA bf16): "
                          "a convolution runs ~25x slower than in fp32 here; model.sampler.precision=auto picks fp32")
        return self.precision

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context the network runs under (also used for observed statistics)."""
        if self.precision_on(device) == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: Tensor) -> Tensor:
        """Chains as the sampler keeps them: fp32, detached, channels-last if asked."""
        x = x.detach().float()
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def energy_grad(self, energy: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
        """f(I; w) per chain and df/dI, without touching the weights' gradients."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():  # also inside Lightning's no-grad validation/predict
            with self.autocast(x.device):
                f = energy(x)
            (grad,) = torch.autograd.grad(f.sum(), x)
        return f.detach().float(), grad.float()

    def drift(self, x: Tensor, grad_f: Tensor) -> Tensor:
        """-U'(I) = df/dI - I / sigma^2 (eq. 15): the direction of a step before the noise."""
        return grad_f - x / self.sigma**2

    @torch.no_grad()
    def step(
        self,
        x: Tensor,
        drift: Tensor,
        fixed: Tensor | None = None,
        mask: Tensor | None = None,
        bounds: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
        rows: tuple[int, int] | None = None,
        step_size: float | None = None,
        noise: bool | None = None,
    ) -> Tensor:
        """One update of eq. (16) from the drift -U'(x), of `step_size` (default: the sampler's)."""
        step_size = self.step_size if step_size is None else step_size
        x = x + (0.5 * step_size**2) * drift
        if self.noise if noise is None else noise:
            x = x + step_size * draw_noise(x, generator, rows)
        if self.clamp and bounds is not None:
            x = torch.maximum(torch.minimum(x, bounds[1]), bounds[0])
        if mask is not None:
            x = torch.where(mask, x, fixed)
        return x

    def sample(
        self,
        energy: EnergyFn,
        x: Tensor,
        mask: Tensor | None = None,
        bounds: tuple[Tensor, Tensor] | None = None,
        n_steps: int | None = None,
        progress: bool = False,
        generator: torch.Generator | None = None,
        rows: tuple[int, int] | None = None,
        step_size: float | None = None,
        noise: bool | None = None,
    ) -> Tensor:
        """Runs the chains `x` for `n_steps` (default: ``self.n_steps``) steps of eq. (16) of
        `step_size` (default: ``self.step_size``), with the noise term unless `noise` is False
        (default: ``self.noise``). The sampler itself never changes: a caller that samples
        differently (recovery, a rolled-back run) says so in the call or in the config.

        Args:
            energy: maps chains [B, C, H, W] to f(I; w) per chain [B].
            x: initial chains (not modified in place).
            mask: bool/0-1 tensor broadcastable to x; True/1 marks pixels that move. The
                others keep their value from `x` exactly (conditional sampling).
            bounds: (lo, hi) per-channel bounds used when ``clamp`` is on.
            progress: show a progress bar over the steps.
            generator: source of the noise Z (default: torch's global generator); a model
                owns one so that a resumed run draws the same noise as an uninterrupted one.
            rows: ``(offset, total)``: the chains are these rows of all processes' (``draw_noise``).
        Returns:
            the chains after the last step, fp32, detached.
        """
        x = self.prepare(x)
        if x.device.type == "cpu":
            keep_freed_memory()
        fixed = None
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
            fixed = x.clone()
        steps = self.n_steps if n_steps is None else checked_steps(n_steps, "the number of Langevin steps")
        step_size = self.step_size if step_size is None else checked_step_size(step_size, "the Langevin step size")
        trace = DriftTrace(step_size, mask)
        for _ in progress_bar(range(steps), "Langevin", unit="step", enabled=progress):
            _, grad_f = self.energy_grad(energy, x)
            drift = self.drift(x, grad_f)
            trace.add(drift)
            x = self.step(x, drift, fixed, mask, bounds, generator, rows, step_size, noise)
        self.last_trace = trace.summary()
        return x

    def synthesize(self, energy: EnergyFn, x: Tensor, **options: Any) -> Tensor:
        """Step 5 of Algorithm 1: what learning compares with the observed images, as ``features``
        takes it; here the chains after ``sample`` (`options` as there)."""
        return self.sample(energy, x, **options)

    def finest(self, synthesized: Tensor) -> Tensor:
        """The chains of what ``synthesize`` returned that the buffer keeps (here: all of it)."""
        return synthesized

    def features(self, energy: Energy, x: Tensor) -> dict[str, Tensor]:
        """The energy's features of images or chains `x`, the network run as in sampling
        (``prepare``, ``autocast``)."""
        with self.autocast(x.device):
            return energy.features(self.prepare(x))

    def __repr__(self) -> str:
        return (
            f"LangevinSampler(step_size={self.step_size}, n_steps={self.n_steps}, "
            f"sigma={self.sigma}, noise={self.noise}, clamp={self.clamp}, "
            f"precision={self.precision!r}, channels_last={self.channels_last})"
        )
