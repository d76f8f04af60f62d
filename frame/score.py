"""Score images with a trained model: ``frame-score --ckpt last.ckpt --input faces/ --input natural/``.

Writes f(I; w) for every image of each folder to a CSV (``folder,path,f``) and prints the mean
and standard deviation per folder: the paper's Table 1 (Section 9), where
f(I; w) = log[p(I; w) / q(I)] + log Z(w) is the log-likelihood ratio up to a constant, so a
model of faces should score face images higher than natural images.

``--score log_p`` writes log p(I; w) + log Z(w) = f(I; w) + log q(I) instead, the model's own
log-likelihood up to one constant, with log q(I) = -||x||^2 / (2 sigma^2) + const for the
Gaussian reference (eq. 2, 26) on the input x. The two orders agree when q is the same for all
images of interest; they differ when q is centred on the data (``model.reference_mean=data``):
then f only measures how the model prefers an image over the mean-face Gaussian, and a
natural image far from the mean face can get a large f but a low likelihood.

Images are read like the training data: resized to cover the model's image size, centre-cropped,
converted to grey for grey models.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from frame.checkpoint import load_model
from frame.data.images import list_images, load_readable, to_tensor


def model_image_size(model) -> int:
    """The side the model was trained on (its canvas for stationary models)."""
    return int(getattr(model.energy, "image_size", None) or model.buffer.chains.shape[-1])


SCORES = {"f": "f(I; w)", "log_p": "log p(I; w) + log Z(w)"}


def log_reference(model, x: torch.Tensor) -> torch.Tensor:
    """log q(I) up to its constant, -||x||^2 / (2 sigma^2) on the input x (eq. 2), shape [N]."""
    return -(x.double().flatten(1) ** 2).sum(1) / (2 * model.sampler.sigma**2)


@torch.no_grad()
def score_images(model, images: torch.Tensor, batch_size: int = 64, score: str = "f") -> torch.Tensor:
    """f(I; w) (or log p(I; w) + log Z with ``score="log_p"``) for RGB images in [0, 1]
    ``[N, 3, H, W]`` (fp32, in batches), shape [N]."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {tuple(SCORES)}, got {score!r}")
    device = model.buffer.chains.device
    out = []
    for i in range(0, len(images), batch_size):
        x = model.to_input(images[i : i + batch_size].to(device))
        f = model.energy(x).double()
        out.append((f + log_reference(model, x) if score == "log_p" else f).cpu())
    return torch.cat(out)


def load_folder(folder: str | Path, image_size: int, grayscale: bool, limit: int | None = None, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Paths and image tensor of a folder (unreadable files skipped); ``limit`` picks a random subset."""
    paths = list_images(folder)
    if limit is not None and limit < len(paths):
        keep = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        paths = [paths[i] for i in keep.tolist()]
    loaded = load_readable(paths, on_bad_image="skip")
    return [str(p) for p, _ in loaded], to_tensor([im for _, im in loaded], image_size, grayscale=grayscale)


def score_folders(
    model, folders: Sequence[str | Path], batch_size: int = 64, limit: int | None = None, seed: int = 0, score: str = "f"
) -> dict[str, tuple[list[str], torch.Tensor]]:
    """{folder: (paths, score per image)} for every folder."""
    size = model_image_size(model)
    grayscale = model.buffer.chains.shape[1] == 1
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


def write_csv(results: dict[str, tuple[list[str], torch.Tensor]], out: str | Path, score: str = "f") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["folder", "path", score])
        for folder, (paths, scores) in results.items():
            writer.writerows([folder, p, f"{s:.9g}"] for p, s in zip(paths, scores.tolist()))
    return out


def format_table(results: dict[str, tuple[list[str], torch.Tensor]], score: str = "f") -> str:
    """Table 1 layout: one column per folder, rows n, mean and std of f(I; w) (or log_p)."""
    names = list(results)
    stats = {name: summary(results[name][1]) for name in names}
    scale = max((abs(v) for m, s in stats.values() for v in (m, s) if math.isfinite(v)), default=1.0)
    exponent = int(math.floor(math.log10(scale))) if scale > 0 else 0
    unit = 10.0**exponent
    width = max(12, *(len(Path(n).name) + 2 for n in names))
    lines = [f"{SCORES[score]} per folder (x 1e{exponent})", " " * 6 + "".join(f"{Path(n).name:>{width}}" for n in names)]
    lines.append("n".ljust(6) + "".join(f"{len(results[n][1]):>{width}}" for n in names))
    lines.append("mean".ljust(6) + "".join(f"{stats[n][0] / unit:>{width}.3f}" for n in names))
    lines.append("std".ljust(6) + "".join(f"{stats[n][1] / unit:>{width}.3f}" for n in names))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frame-score", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (e.g. last.ckpt)")
    parser.add_argument("--input", action="append", required=True, help="folder of images to score (repeatable)")
    parser.add_argument("--out", default="scores.csv", help="CSV to write (folder,path,<score>)")
    parser.add_argument("--score", choices=tuple(SCORES), default="f",
                        help="f: f(I; w), the paper's Table 1; log_p: f(I; w) + log q(I), the log-likelihood up to log Z")
    parser.add_argument("--limit", type=int, default=None, help="score at most this many random images per folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, tuple[list[str], torch.Tensor]]:
    args = parse_args(argv)
    model = load_model(args.ckpt, device=args.device)
    results = score_folders(model, args.input, args.batch_size, args.limit, args.seed, args.score)
    out = write_csv(results, args.out, args.score)
    print(format_table(results, args.score))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
