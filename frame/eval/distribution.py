"""Distances between two sets of feature vectors ``[N, D]`` (real, generated): fidelity and diversity.

All functions take features already computed (``frame.eval.features.VGGFeatures``), so one
forward pass per image set serves every metric and the calibration of ``frame.eval.report``.

- :func:`kid`: Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"),
  the unbiased squared MMD with the cubic polynomial kernel ``(x.y / D + 1)^3``; mean and std
  over random subsets. Unbiased, so it is meaningful from a few dozen images (0 = same
  distribution; small negative values are noise).
- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to the two sets
  (Heusel et al. 2017, FID), written out (see its docstring for why not torchmetrics').
  Biased upwards at small N: compare it only between sets of the same size, as
  ``frame.eval.report`` does.
- :func:`prdc`: precision and recall (Kynkäänniemi et al. 2019) and density and coverage
  (Naeem et al. 2020) from k-nearest-neighbour balls. Precision/density: are the generated
  images where real images are? Recall/coverage: are all real images near some generated
  one? "100 chains, 5 distinct faces" has fair precision but low recall and coverage.

KID is torchmetrics' ``KernelInceptionDistance`` given an identity feature module over the
precomputed vectors (torchmetrics needs torch-fidelity only for its default Inception
network, not here).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


class Precomputed(nn.Module):
    """Identity "feature extractor" handing torchmetrics vectors computed elsewhere."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: Tensor) -> Tensor:
        return features


def _check(real: Tensor, fake: Tensor, minimum: int) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(real), len(fake)) < minimum:
        raise ValueError(f"need at least {minimum} images per set, got {len(real)} real and {len(fake)} generated")


def kid(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over ``subsets`` random subsets of ``subset_size`` images of each set).

    ``subset_size`` defaults to half the smaller set, at most 1000 (the paper's size): with all
    images in every subset the std would be 0; with half, the std is the spread of the
    estimate at half the sample size. Subsets are drawn from ``seed`` without touching the
    global random state (training runs stay reproducible). Computed in float32: features
    scaled to about 1 (as ``frame.eval.report`` does) keep its rounding far below the subset std.
    """
    # here, not at the top: torchmetrics loads torchvision and every metric it has (seconds), and a
    # command that imports frame.eval without computing KID (frame-eval --samples, frame.load) need not wait
    from torchmetrics.image.kid import KernelInceptionDistance

    _check(real, fake, 4)
    size = subset_size or min(1000, min(len(real), len(fake)) // 2)
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    # float32: 300 small kernel matrices in float64 cost seconds on two busy CPU cores
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    threads = torch.get_num_threads()
    # one thread: hundreds of kernels of a few dozen images each; on busy cores the hand-offs
    # between torch's threads cost about a thousand times the maths
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = metric.compute()
    finally:
        torch.set_num_threads(threads)
    return float(mean), float(std)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r) + Tr(S_f) - 2 Tr((S_r S_f)^(1/2)), in float64.

    With centred features X = Q R (QR), the eigenvalues of S_r S_f are the squared singular
    values of X_r X_f^T / sqrt((n_r-1)(n_f-1)), which has those of R_r R_f^T: the last trace is
    a nuclear norm of a matrix no larger than min(n, D) a side. Exact; torchmetrics'
    ``FrechetInceptionDistance`` instead solves a non-symmetric D x D eigenproblem (D = 512)
    on every call, which dominates an evaluation of a few dozen images on a CPU.
    """
    _check(real, fake, 2)
    real, fake = real.double(), fake.double()
    xr, xf = real - real.mean(0), fake - fake.mean(0)
    nr, nf = len(real) - 1, len(fake) - 1
    rr, rf = torch.linalg.qr(xr, mode="r").R, torch.linalg.qr(xf, mode="r").R
    cross = torch.linalg.matrix_norm(rr @ rf.T, ord="nuc") / (nr * nf) ** 0.5
    mean_term = (real.mean(0) - fake.mean(0)).pow(2).sum()
    return float(mean_term + xr.pow(2).sum() / nr + xf.pow(2).sum() / nf - 2 * cross)


def _kth_neighbour_radii(x: Tensor, k: int) -> Tensor:
    """Distance of each row to its k-th nearest other row."""
    distances = torch.cdist(x, x)
    return distances.kthvalue(k + 1, dim=1).values  # +1: the row itself is at distance 0


def prdc(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage with k-NN balls (Naeem et al. 2020's definitions).

    precision = fraction of generated inside some real ball; recall = fraction of real inside
    some generated ball; density = mean count of real balls around each generated, / k;
    coverage = fraction of real balls holding a generated image. Balls: radius to the k-th
    nearest neighbour in the own set.
    """
    _check(real, fake, k + 1)
    real, fake = real.double(), fake.double()
    real_radii = _kth_neighbour_radii(real, k)
    fake_radii = _kth_neighbour_radii(fake, k)
    distances = torch.cdist(real, fake)  # [N_real, N_fake]
    in_real_ball = distances < real_radii[:, None]
    return {
        "precision": float(in_real_ball.any(dim=0).double().mean()),
        "recall": float((distances < fake_radii[None, :]).any(dim=1).double().mean()),
        "density": float(in_real_ball.double().sum(dim=0).mean() / k),
        "coverage": float((distances.min(dim=1).values < real_radii).double().mean()),
    }
