"""Power spectra: is the samples' energy spread over spatial frequencies as in real images, and is there a grid?

- :func:`spectrum_distance`: the radially averaged log power spectrum of each set (mean
  power over images and channels at each integer radius of the 2-D DFT, Hann-windowed so
  the images' borders do not leak a cross into it); per radius, the error is the absolute
  difference of the two log10 profiles (in decades), capped at one decade; the distance is
  its root mean square over log frequency. Two choices make it read as a person does:

  * **each octave weighs the same**: the rings sit at linearly spaced radii, so a plain mean
    over them gives the top octave (half Nyquist to Nyquist) as much say as all the others
    together, and whatever happens only there (the depth of a blur's tail) would rule the
    distance. Natural images' power falls about as 1/f^2, the same at every scale, and a
    pyramid (the visual system's frequency channels, Portilla and Simoncelli's statistics)
    gives each octave one voice: radius r is weighted 1/r, the log-frequency width of its
    ring (d ln r = dr / r).
  * **a band off by more than tenfold is simply wrong**: beyond one decade how far it is
    off says nothing a person sees (a blurred set's upper band is gone whether its power is
    10^-3 or 10^-6 of the real one's, and how deep it reads depends on the quantisation
    floor below), so each band's error saturates at one decade.

  The distance is 0 for the same spectrum and 1 when every octave is off tenfold or more.
  Blur takes the upper octaves' power away and leaves the lower ones; white noise is
  wrong at both ends (too little power at the lowest frequencies, far too much at the
  highest); patchwork seams and grids add high-frequency power. A sample set with the right
  spectrum scores what two sets of real images do.
- :func:`grid_peaks`: for each period p (2, 4, 8, 16 px: the strides of the VGG-16 taps'
  pooling, the periods of grid and checkerboard artefacts), the power on the lattice of
  frequencies a p-periodic pattern occupies (multiples of 1/p cycles per pixel, both axes)
  over the power in the ring of bins two bins around each lattice point, for the samples,
  divided by the same ratio for the real images. A smooth spectrum (real images, blur,
  noise) gives about 1; a periodic pattern is a sharp peak and gives more. ``max`` over
  periods is the "grid peak": above 1.5 the grid is there to see.

On textures the spectra are Welch estimates, the mean over ``segment`` px tiles (32 px in
``frame.eval.report``): over a whole 128 px crop, the two or three lowest octaves hold the
texture's layout (brick's courses against gravel's stones), where two textures can differ by
more than either differs from white noise; over 32 px tiles the distance ranks the exemplar's
own crops below other textures below noise (tests/test_eval_pixels.py).

Power below 8-bit quantisation noise (variance 1/(12 * 255^2) per pixel) is not visible and
cannot be stored: it is added to every bin, so a heavily blurred set is judged at the level an
8-bit image of it has, not at a far tail of the Gaussian. Images are float ``[N, C, H, W]`` in
[0, 1]; both sets must have one size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from frame.eval.features import as_rgb01

#: periods of grid artefacts (pixels)
GRID_PERIODS = (2, 4, 8, 16)
#: grid_peak above this is a visible grid
GRID_PEAK_BAD = 1.5
#: a band whose power is off by more than this many decades (tenfold) counts as wrong, however far
SATURATION_DECADES = 1.0
#: power per DFT bin of 8-bit quantisation noise (unit-energy window)
QUANTISATION_POWER = 1 / (12 * 255**2)


def power_spectrum(images: Tensor) -> Tensor:
    """``[N, C, H, W]`` -> ``[H, W]``: mean over images and channels of |DFT|^2 of the windowed, mean-free images.

    Normalised so that white noise of variance s^2 has power s^2 in every bin (the window's
    energy is divided out); the quantisation floor is added.
    """
    x = as_rgb01(images).double()
    h, w = x.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float64),
                         torch.hann_window(w, periodic=False, dtype=torch.float64))
    window = window / window.pow(2).mean().sqrt()
    x = (x - x.mean(dim=(2, 3), keepdim=True)) * window
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=(0, 1)) / (h * w)
    return power + QUANTISATION_POWER


def radial_profile(power: Tensor) -> Tensor:
    """Mean power at each integer radius 1 .. min(H, W) // 2 (in cycles per image along the shorter side)."""
    h, w = power.shape
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1) * min(h, w)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1) * min(h, w)
    radius = (fy**2 + fx**2).sqrt().round().long().flatten()
    top = min(h, w) // 2
    keep = (radius >= 1) & (radius <= top)
    sums = torch.zeros(top + 1, dtype=torch.float64).index_add_(0, radius[keep], power.flatten()[keep])
    counts = torch.zeros(top + 1, dtype=torch.float64).index_add_(0, radius[keep], torch.ones_like(power.flatten()[keep]))
    return (sums / counts)[1:]


def segments(images: Tensor, side: int) -> Tensor:
    """``[N, C, H, W]`` -> ``[M, C, side, side]``: every image's ``side`` px tiles, overlapping by half (Welch's segments)."""
    c, stride = images.shape[1], max(1, side // 2)
    tiles = images.unfold(2, side, stride).unfold(3, side, stride)  # [N, C, rows, columns, side, side]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, side, side)


def spectrum_distance(samples: Tensor, reference: Tensor, segment: int | None = None) -> float:
    """Log-frequency RMS of the per-radius log10 power error, capped at one decade (0 = same spectrum, 1 = every band tenfold off).

    ``segment``: average the spectra of ``segment`` px tiles of the images, overlapping by half
    (Welch's method), instead of the whole images': textures, whose large crops differ in
    layout at their lowest frequencies more than any texture differs from noise (module
    docstring).
    """
    _check(samples, reference)
    if segment is not None and segment < min(samples.shape[-2:]):
        samples, reference = segments(samples, segment), segments(reference, segment)
    difference = radial_profile(power_spectrum(samples)).log10() - radial_profile(power_spectrum(reference)).log10()
    error = difference.abs().clamp(max=SATURATION_DECADES)
    weight = 1 / torch.arange(1, len(error) + 1, dtype=torch.float64)  # radius r: its ring's width in log frequency
    return float((weight * error.pow(2)).sum().div(weight.sum()).sqrt())


def lattice_ratio(power: Tensor, period: int) -> float:
    """Power on the frequency lattice of ``period`` over the power in the ring two bins around it.

    Each lattice point's peak is the 3 x 3 block of bins around it (the window spreads a
    periodic pattern over one bin each side), compared with 9 times the mean of the ring of
    bins at Chebyshev distance 2 (where the window puts none of it).
    """
    h, w = power.shape
    block = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)]
    ring = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]
    peak = background = 0.0
    for m in range(period):
        for n in range(period):
            if m == n == 0:
                continue
            y, x = round(m * h / period), round(n * w / period)
            peak += sum(float(power[(y + dy) % h, (x + dx) % w]) for dy, dx in block)
            background += len(block) * sum(float(power[(y + dy) % h, (x + dx) % w]) for dy, dx in ring) / len(ring)
    return peak / background


def usable_periods(size: tuple[int, int], periods: tuple[int, ...] = GRID_PERIODS) -> tuple[int, ...]:
    """Periods with at least 4 repeats along the shorter side (lattice points 4 bins apart or more)."""
    return tuple(p for p in periods if 4 * p <= min(size))


def grid_peaks(samples: Tensor, reference: Tensor, periods: tuple[int, ...] = GRID_PERIODS) -> dict[int, float]:
    """{period: lattice ratio of the samples / that of the reference} for the usable periods."""
    _check(samples, reference)
    usable = usable_periods(tuple(samples.shape[-2:]), periods)
    if not usable:
        raise ValueError(f"images of {tuple(samples.shape[-2:])} px are too small for grid periods {periods} (4 repeats)")
    mine, theirs = power_spectrum(samples), power_spectrum(reference)
    return {p: lattice_ratio(mine, p) / lattice_ratio(theirs, p) for p in usable}


def grid_peak(samples: Tensor, reference: Tensor, periods: tuple[int, ...] = GRID_PERIODS) -> float:
    """The largest of :func:`grid_peaks`: about 1 without a grid, above ``GRID_PEAK_BAD`` a visible one."""
    return max(grid_peaks(samples, reference, periods).values())


def _check(samples: Tensor, reference: Tensor) -> None:
    if samples.shape[-2:] != reference.shape[-2:]:
        raise ValueError(f"spectra: both sets must have one size, got {tuple(samples.shape[-2:])} and {tuple(reference.shape[-2:])}")
