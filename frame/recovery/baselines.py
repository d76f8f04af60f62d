"""Classical image-recovery baselines and the error measure of the paper's Table 2.

Every method takes an image as a float array ``[H, W]`` or ``[H, W, C]`` with values in [0, 1]
and a bool mask ``[H, W]`` (True = missing), and returns the recovered image: observed pixels
are returned unchanged (exactly), missing ones are filled. Colour images are treated channel
by channel (the OpenCV methods work on all channels at once).

Methods (``BASELINES``; ``available_baselines()`` lists the importable ones):

``mean``          every missing pixel = the mean of the observed pixels (a floor).
``harmonic``      MRF-l2 (paper, Table 2): the MAP of the Gaussian MRF with nearest-neighbour
                  potentials (u_p - u_q)^2, i.e. the discrete Laplace equation
                  sum_{q ~ p} (u_p - u_q) = 0 on the hole with the observed pixels as Dirichlet
                  data (4-neighbourhood; at the image border only existing neighbours count,
                  i.e. zero-flux). One sparse solve (``scipy.sparse.linalg.spsolve``).
``tv``            MRF-l1 (Table 2): minimises the anisotropic total variation
                  sum_{q ~ p} |u_p - u_q| over the hole with the observed pixels fixed
                  ("TV inpainting", Chan & Shen, SIAM J. Appl. Math. 62(3), 2001, without a
                  data term inside the hole). Solved by the first-order primal-dual algorithm of
                  Chambolle & Pock (J. Math. Imaging Vis. 40:120-145, 2011, Algorithm 1) on
                  min_u ||grad u||_1 + indicator{u = f off the hole}, started from the
                  harmonic solution. (``skimage.restoration.denoise_tv_*`` cannot switch the
                  data term off on the hole, so it is not used.)
``biharmonic``    ``skimage.restoration.inpaint_biharmonic`` (Damelin & Hoang, 2018).
``telea``         ``cv2.inpaint(..., cv2.INPAINT_TELEA)`` (Telea, J. Graphics Tools 9(1), 2004),
                  if ``opencv-python-headless`` is installed (``pip install frame[baselines]``).
``navier_stokes`` ``cv2.inpaint(..., cv2.INPAINT_NS)`` (Bertalmio, Bertozzi & Sapiro, CVPR 2001).
                  The OpenCV methods work on 8-bit images (a quantisation error <= 1/510).

Data-driven (not in ``BASELINES``: it needs a bank of training images, so the bench builds it
with ``exemplar_fill(bank, k)``; ``nearest_exemplars`` is the same fill on torch batches, which
``model.buffer.start: exemplars`` starts the model's chains from):

``exemplars``     the average of the ``k`` bank images nearest to the image on its observed
                  pixels (mean squared difference), each shifted so that the ring of observed
                  pixels round the hole has the image's mean; on aligned faces of one lighting
                  set a strong bar, since another subject under the same light is in the bank
                  (nearest-neighbour completion in the spirit of Hays & Efros, "Scene completion
                  using millions of photographs", SIGGRAPH 2007, without their seam cut).

``masked_mae(recovered, original, mask)`` is Table 2's measure: the mean absolute per-pixel
difference on the masked pixels, intensities in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve
from torch import Tensor

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if image.ndim not in (2, 3) or mask.shape != image.shape[:2]:
        raise ValueError(f"need an image [H, W] or [H, W, C] and a mask [H, W]; got {image.shape} and {mask.shape}")
    if not (~mask).any():
        raise ValueError("the mask covers the whole image: nothing to recover from")
    return image, mask


def _hole_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The hole's bounding box grown by one pixel (clipped to the image)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))


def _per_channel(fill: Callable[[np.ndarray, np.ndarray], np.ndarray], local: bool = False) -> Method:
    """Lifts a method on [H, W] images to [H, W] and [H, W, C]; pastes the observed pixels back.

    ``local``: the method only couples 4-neighbours, so it is run on the hole's bounding box
    plus a one-pixel ring of observed pixels (the same solution, found faster).
    """

    def method(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        image, mask = _check(image, mask)
        if not mask.any():
            return image.copy()
        box = _hole_box(mask) if local else (slice(None), slice(None))
        crop, hole = image[box], mask[box]
        if crop.ndim == 2:
            filled = fill(crop, hole)
        else:
            filled = np.stack([fill(crop[..., c], hole) for c in range(crop.shape[-1])], axis=-1)
        out = image.copy()
        out[box] = filled
        keep = mask if image.ndim == 2 else mask[..., None]
        return np.where(keep, out, image)

    method.__doc__ = fill.__doc__
    method.__name__ = fill.__name__
    return method


@_per_channel
def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Missing pixels = the mean of the observed ones."""
    out = image.copy()
    out[mask] = image[~mask].mean()
    return out


def _neighbour_pairs(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (p, q) of the horizontal and vertical 4-neighbour pairs."""
    index = np.arange(height * width).reshape(height, width)
    p = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    q = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    return p, q


def _harmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """MRF-l2: the discrete Laplace equation on the hole, observed pixels as boundary values."""
    height, width = image.shape
    p, q = _neighbour_pairs(height, width)
    # graph Laplacian L = D - A of the 4-neighbour grid
    n = height * width
    adjacency = sp.coo_matrix((np.ones(2 * p.size), (np.r_[p, q], np.r_[q, p])), shape=(n, n)).tocsr()
    laplacian = sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
    hole = np.flatnonzero(mask.ravel())
    known = np.flatnonzero(~mask.ravel())
    # L_hh u_h = -L_hk f_k
    rhs = -(laplacian[hole][:, known] @ image.ravel()[known])
    solution = spsolve(laplacian[hole][:, hole].tocsc(), rhs)
    out = image.copy().ravel()
    out[hole] = solution
    return out.reshape(height, width)


harmonic = _per_channel(_harmonic, local=True)


def _grad(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences (zero across the last row/column)."""
    gx = np.zeros_like(u)
    gy = np.zeros_like(u)
    gx[:, :-1] = u[:, 1:] - u[:, :-1]
    gy[:-1, :] = u[1:, :] - u[:-1, :]
    return gx, gy


def _div(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Minus the adjoint of ``_grad``."""
    d = np.zeros_like(px)
    d[:, 0] += px[:, 0]
    d[:, 1:-1] += px[:, 1:-1] - px[:, :-2]
    d[:, -1] -= px[:, -2]
    d[0, :] += py[0, :]
    d[1:-1, :] += py[1:-1, :] - py[:-2, :]
    d[-1, :] -= py[-2, :]
    return d


def total_variation(image: np.ndarray, mask: np.ndarray, n_iter: int = 1000) -> np.ndarray:
    """MRF-l1: anisotropic-TV inpainting by Chambolle-Pock primal-dual iterations."""

    def fill(channel: np.ndarray, hole: np.ndarray) -> np.ndarray:
        u = _harmonic(channel, hole)
        u_bar = u.copy()
        px, py = np.zeros_like(u), np.zeros_like(u)
        tau = sigma = 0.99 / np.sqrt(8.0)  # tau * sigma * ||grad||^2 < 1, ||grad||^2 <= 8
        for _ in range(n_iter):
            gx, gy = _grad(u_bar)
            # prox of sigma F*, F = ||.||_1 (anisotropic): projection onto [-1, 1]
            px = np.clip(px + sigma * gx, -1.0, 1.0)
            py = np.clip(py + sigma * gy, -1.0, 1.0)
            # prox of tau G, G = indicator{u = f off the hole}: reset the observed pixels
            u_new = u + tau * _div(px, py)
            u_new[~hole] = channel[~hole]
            u_bar = 2 * u_new - u
            u = u_new
        return u

    return _per_channel(fill, local=True)(image, mask)


def biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """scikit-image's biharmonic inpainting."""
    from skimage.restoration import inpaint_biharmonic

    image, mask = _check(image, mask)
    if not mask.any():
        return image.copy()
    out = inpaint_biharmonic(image, mask, channel_axis=-1 if image.ndim == 3 else None)
    keep = mask if image.ndim == 2 else mask[..., None]
    return np.where(keep, out, image)


def _opencv(flag_name: str, radius: int = 3) -> Method:
    def method(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        image, mask = _check(image, mask)
        if not mask.any():
            return image.copy()
        eight_bit = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        out = cv2.inpaint(eight_bit, mask.astype(np.uint8) * 255, radius, getattr(cv2, flag_name))
        out = out.reshape(image.shape).astype(np.float64) / 255.0
        keep = mask if image.ndim == 2 else mask[..., None]
        return np.where(keep, out, image)

    method.__name__ = flag_name.lower()
    method.__doc__ = f"OpenCV's cv2.inpaint with {flag_name} (radius {radius})."
    return method


telea = _opencv("INPAINT_TELEA")
navier_stokes = _opencv("INPAINT_NS")


#: a bank image this close to the image on its observed pixels (mean squared difference, [0, 1]
#: intensities) is the image itself, maybe after a round trip through the model's input space
SAME_IMAGE = 1e-8


def nearest_exemplars(images: Tensor, missing: Tensor, bank: Tensor, k: int = 8, ring: int = 3) -> Tensor:
    """The ``exemplars`` fill of a batch (torch): ``images`` ``[B, C, H, W]`` and ``bank``
    ``[N, C, H, W]`` in [0, 1], ``missing`` ``[B, 1, H, W]`` (True = missing). Each missing
    pixel is the mean over the ``k`` bank images nearest to the image on its observed pixels of
    their pixel, each shifted by the difference of the image's and its means (per channel) on
    the observed pixels within ``ring`` pixels of the hole; clipped to [0, 1]. Bank images equal
    to the image on its observed pixels (within ``SAME_IMAGE``) are left out, so that a training
    image is not completed from itself (fewer than ``k`` are averaged if the rest are such)."""
    if bank.dim() != 4 or len(bank) == 0:
        raise ValueError(f"the exemplar bank must be images [N, C, H, W]; got shape {tuple(bank.shape)}")
    if int(k) != k or not 1 <= k <= len(bank):
        raise ValueError(f"k must be an integer between 1 and the bank's {len(bank)} images, got {k}")
    if bank.shape[1:] != images.shape[1:]:
        raise ValueError(f"the exemplar bank holds {tuple(bank.shape[1:])} images, the images are {tuple(images.shape[1:])}")
    bank = bank.to(device=images.device, dtype=images.dtype)
    missing = missing.to(device=images.device, dtype=torch.bool).expand(images.shape[0], 1, *images.shape[-2:])
    grow = torch.nn.functional.max_pool2d(missing.to(images.dtype), 2 * ring + 1, stride=1, padding=ring) > 0
    filled = []
    for image, hole, near_hole in zip(images, missing, grow):
        seen = (~hole).to(images.dtype)  # [1, H, W]
        distance = ((bank - image) ** 2 * seen).sum((1, 2, 3)) / (seen.sum() * images.shape[1]).clamp_min(1)
        distance = torch.where(distance < SAME_IMAGE, torch.full_like(distance, float("inf")), distance)
        order = torch.argsort(distance, stable=True)[:k]
        order = order[torch.isfinite(distance[order])]  # fewer than k when the bank holds little else
        if len(order) == 0:
            raise ValueError("the exemplar bank holds no image but the image itself")
        nearest = bank[order]  # [k, C, H, W]
        band = near_hole & ~hole
        band = (band if band.any() else ~hole).to(images.dtype)  # no observed pixel near the hole: the whole image
        area = band.sum()
        shift = (image * band).sum((1, 2)) / area - (nearest * band).sum((2, 3)) / area  # [k, C]
        fill = (nearest + shift[:, :, None, None]).mean(0).clamp(0, 1)
        filled.append(torch.where(hole, fill, image))
    return torch.stack(filled)


def exemplar_fill(bank: np.ndarray, k: int = 8, ring: int = 3) -> Method:
    """The ``exemplars`` method over ``bank`` (``[N, H, W]`` or ``[N, H, W, C]``, [0, 1]), one
    image at a time (``nearest_exemplars`` in float64)."""
    bank = np.asarray(bank, dtype=np.float64)
    if bank.ndim not in (3, 4) or len(bank) == 0:
        raise ValueError(f"the exemplar bank must be images [N, H, W] or [N, H, W, C]; got shape {bank.shape}")
    if int(k) != k or not 1 <= k <= len(bank):
        raise ValueError(f"k must be an integer between 1 and the bank's {len(bank)} images, got {k}")
    bank_t = torch.from_numpy(bank if bank.ndim == 4 else bank[..., None]).permute(0, 3, 1, 2)

    def method(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        image, mask = _check(image, mask)
        if bank.shape[1:] != image.shape:
            raise ValueError(f"the exemplar bank holds {bank.shape[1:]} images, the image is {image.shape}")
        x = torch.from_numpy(image if image.ndim == 3 else image[..., None]).permute(2, 0, 1)[None]
        out = nearest_exemplars(x, torch.from_numpy(mask)[None, None], bank_t, k, ring)[0].permute(1, 2, 0).numpy()
        out = out if image.ndim == 3 else out[..., 0]
        out[~mask] = image[~mask]  # exactly
        return out

    method.__doc__ = f"The mean of the {k} nearest of {len(bank)} bank images on the observed pixels."
    return method


BASELINES: dict[str, Method] = {
    "mean": mean_fill,
    "harmonic": harmonic,
    "tv": total_variation,
    "biharmonic": biharmonic,
    "telea": telea,
    "navier_stokes": navier_stokes,
}

#: what each name is called in the printed table (the paper's names where it has one)
LABELS = {
    "mean": "mean fill",
    "harmonic": "MRF-l2 (harmonic)",
    "tv": "MRF-l1 (TV)",
    "biharmonic": "biharmonic (skimage)",
    "telea": "Telea (OpenCV)",
    "navier_stokes": "Navier-Stokes (OpenCV)",
    "exemplars": "nearest training faces, averaged",
}


def opencv_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def available_baselines() -> list[str]:
    """The names in ``BASELINES`` whose dependencies are installed."""
    return [name for name in BASELINES if name not in ("telea", "navier_stokes") or opencv_available()]


def masked_mae(recovered, original, mask) -> float:
    """Table 2's error: mean |recovered - original| over the masked pixels (and channels).

    ``recovered`` and ``original``: arrays/tensors ``[H, W]``, ``[H, W, C]``, ``[C, H, W]``
    or batches of them, intensities in [0, 1]; ``mask`` broadcastable to them, True = missing.
    For a batch it is the mean over all masked pixels of all images (equal to the mean of the
    per-image errors when every mask has the same size).
    """
    recovered, original, mask = (np.asarray(_numpy(a)) for a in (recovered, original, mask))
    if recovered.shape != original.shape:
        raise ValueError(f"recovered {recovered.shape} and original {original.shape} differ in shape")
    mask = mask.astype(bool)
    if mask.ndim == 2 and recovered.ndim == 3 and mask.shape == recovered.shape[:2]:
        mask = mask[..., None]  # [H, W] mask for an [H, W, C] image
    mask = np.broadcast_to(mask, recovered.shape)
    if not mask.any():
        raise ValueError("the mask is empty: no masked pixel to measure")
    return float(np.abs(recovered.astype(np.float64) - original.astype(np.float64))[mask].mean())


def _numpy(a):
    """Torch tensors (any device) to numpy; everything else as is."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else a
