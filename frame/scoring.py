"""Scoring images with a trained model: f(I; w) and log p(I; w) per image (paper, Table 1).

f(I; w) = log[p(I; w) / q(I)] + log Z(w) is the log-likelihood ratio of an image against the
reference q(I), up to one constant (eq. 8), so a model of faces should score faces above
natural images (Section 9, Table 1). ``score="log_p"`` gives log p(I; w) + log Z(w) =
f(I; w) + log q(I) instead, the model's own log-likelihood up to one constant, with
log q(I) = -||x||^2 / (2 sigma^2) + const for the Gaussian reference (eq. 2, 26) on the input x.
The two orders agree when q is the same for all images of interest; they differ when q is
centred on the data (``model.reference_mean=data``): then f only measures how the model
prefers an image over the mean-face Gaussian, and a natural image far from the mean face can
get a large f but a low likelihood.

Images are read like the training data: resized to cover the model's image size,
centre-cropped, grey for grey models. ``frame-score`` and ``bench/score_faces_vs_natural.py``
use this module.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from frame.choices import SCORES
from frame.data.images import list_images, load_readable, to_tensor
from frame.outputs import check_finite, write_file
from frame.synthesis import canvas_side

if TYPE_CHECKING:
    from frame.models.base import FrameModel

#: {input: (image paths, score per image)}
Results = dict[str, tuple[list[str], torch.Tensor]]


def log_reference(model: FrameModel, x: torch.Tensor) -> torch.Tensor:
    """log q(I) up to its constant, -||x||^2 / (2 sigma^2) on the input x (eq. 2), shape [N]."""
    return -(x.double().flatten(1) ** 2).sum(1) / (2 * model.sampler.sigma**2)


@torch.no_grad()
def score_images(model: FrameModel, images: torch.Tensor, batch_size: int = 64, score: str = "f") -> torch.Tensor:
    """f(I; w) (or log p(I; w) + log Z with ``score="log_p"``) for RGB images in [0, 1]
    ``[N, 3, H, W]`` (fp32, in batches), shape [N]."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {tuple(SCORES)}, got {score!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model.buffer.chains.device
    out = []
    for i in range(0, len(images), batch_size):
        x = model.to_input(images[i : i + batch_size].to(device))
        f = model.energy(x).double()
        out.append((f + log_reference(model, x) if score == "log_p" else f).cpu())
    return torch.cat(out)


def load_folder(
    folder: str | Path, image_size: int, grayscale: bool, limit: int | None = None, seed: int = 0
) -> tuple[list[str], torch.Tensor]:
    """Paths and image tensor of a folder or image file (unreadable files skipped with a
    warning); ``limit`` picks a random subset, the same for the same ``seed``."""
    paths = list_images(folder)
    if limit is not None and limit < len(paths):
        keep = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        paths = [paths[i] for i in keep.tolist()]
    loaded = load_readable(paths, on_bad_image="skip")
    return [str(p) for p, _ in loaded], to_tensor([im for _, im in loaded], image_size, grayscale=grayscale)


def score_folders(
    model: FrameModel, folders: Sequence[str | Path], batch_size: int = 64, limit: int | None = None,
    seed: int = 0, score: str = "f",
) -> Results:
    """{folder: (paths, score per image)} for every folder (or image file)."""
    size = canvas_side(model)
    grayscale = model.input_space.channels == 1
    results = {}
    for folder in folders:
        paths, images = load_folder(folder, size, grayscale, limit, seed)
        results[str(folder)] = (paths, score_images(model, images, batch_size, score))
    return results


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of a score separating positives from negatives.

    The Mann-Whitney form: P(score of a random positive > that of a random negative), ties
    counted one half.
    """
    positive, negative = positive.double().flatten(), negative.double().flatten()
    if not len(positive) or not len(negative):
        raise ValueError("roc_auc needs at least one positive and one negative score")
    greater = (positive[:, None] > negative[None, :]).double().sum()
    ties = (positive[:, None] == negative[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def summary(scores: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation (population, as a table of a fixed set)."""
    scores = scores.double()
    return float(scores.mean()), float(scores.std(unbiased=False)) if len(scores) > 1 else 0.0


def write_csv(results: Results, out: str | Path, score: str = "f", reads: Sequence[Path] = ()) -> Path:
    """One row ``input,path,<score>`` per image, written through ``frame.outputs`` (never over `reads`,
    never through a link); refused when a score is not finite."""
    for folder, (_, scores) in results.items():
        check_finite(scores, f"the scores of {folder}")
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["input", "path", score])
    for folder, (paths, scores) in results.items():
        writer.writerows([folder, p, f"{s:.9g}"] for p, s in zip(paths, scores.tolist()))
    scored = [Path(p) for paths, _ in results.values() for p in paths]
    return write_file(Path(out), lambda tmp: tmp.write_text(text.getvalue(), newline=""), [*reads, *scored])


def format_table(results: Results, score: str = "f") -> str:
    """Table 1 layout: one column per input, rows n, mean and std of f(I; w) (or log_p)."""
    names = list(results)
    stats = {name: summary(results[name][1]) for name in names}
    scale = max((abs(v) for m, s in stats.values() for v in (m, s) if math.isfinite(v)), default=1.0)
    exponent = int(math.floor(math.log10(scale))) if scale > 0 else 0
    unit = 10.0**exponent
    width = max(12, *(len(Path(n).name) + 2 for n in names))
    lines = [f"{SCORES[score]} per input (x 1e{exponent})", " " * 6 + "".join(f"{Path(n).name:>{width}}" for n in names)]
    lines.append("n".ljust(6) + "".join(f"{len(results[n][1]):>{width}}" for n in names))
    lines.append("mean".ljust(6) + "".join(f"{stats[n][0] / unit:>{width}.3f}" for n in names))
    lines.append("std".ljust(6) + "".join(f"{stats[n][1] / unit:>{width}.3f}" for n in names))
    return "\n".join(lines)
