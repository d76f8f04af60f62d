"""The Portilla-Simoncelli distance (``frame.eval.portilla``) on known cases, with its floor and ceiling.

    python bench/ps_calibration.py [--sizes 64 128 224] [--n-crops 32] [--threads 2]

Exemplar: the left half of scikit-image's brick at 512 px (grey). Samples: canvases of each
size cut from the right half of brick, grass and gravel, a box-blurred brick (3, 5 and 9 px) and
white noise; then, at the first size, a colour exemplar (red brick, blue gravel: R = brick, B = gravel, G = their
mean) against the same colours, the colours swapped and the luminance alone, judged in colour
and on luminance. Prints value, floor (other exemplar crops), ceiling (noise), position and
the wall time of one ``ps_score`` call (reference, floor, value and ceiling: four crop sets).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frame.data.images import embedded_images, to_tensor  # noqa: E402
from frame.eval.portilla import ps_geometry, ps_score  # noqa: E402
from frame.eval.texture import random_crops  # noqa: E402


def canvases(image: torch.Tensor, size: int, n: int = 8, seed: int = 1) -> torch.Tensor:
    """``n`` random ``size`` px canvases of one image, as a sampler's output would be."""
    return random_crops(image, size, n, torch.Generator().manual_seed(seed))


def blur(images: torch.Tensor, k: int) -> torch.Tensor:
    return nn.functional.avg_pool2d(images, k, 1, k // 2, count_include_pad=False)


def row(name: str, samples: torch.Tensor, exemplar: torch.Tensor, n_crops: int, colour: bool | None = None) -> str:
    start = time.perf_counter()
    score = ps_score(samples, exemplar, n_crops=n_crops, colour=colour)
    wall = time.perf_counter() - start
    position = (score.value - score.floor) / (score.ceiling - score.floor)
    return f"{name:<28} {score.value:9.3f} {score.floor:7.3f} {score.ceiling:9.2f} {position:9.4f} {wall:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--n-crops", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    textures = {name: to_tensor(embedded_images(name), 512) for name in ("brick", "grass", "gravel")}
    exemplar = textures["brick"][..., :256]
    brick, gravel = textures["brick"][:, :1], textures["gravel"][:, :1]
    colourful = torch.cat([brick, (brick + gravel) / 2, gravel], 1)
    swapped = torch.cat([gravel, (brick + gravel) / 2, brick], 1)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.n_crops} crops per set, load {os.getloadavg()[0]:.2f} at start")
    header = f"{'samples':<28} {'value':>9} {'floor':>7} {'ceiling':>9} {'position':>9} {'wall s':>7}"
    for size in args.sizes:
        side, n_scales = ps_geometry(size, 256)
        print(f"\n{size} px samples: {side} px crops, {n_scales} scales; exemplar brick 512 x 256 (grey)")
        print(header)
        right = {name: image[..., 256:] for name, image in textures.items()}
        cases = [
            ("brick (other half)", right["brick"]), ("gravel", right["gravel"]), ("grass", right["grass"]),
            ("brick, 3 px blur", blur(right["brick"], 3)), ("brick, 5 px blur", blur(right["brick"], 5)),
            ("brick, 9 px blur", blur(right["brick"], 9)),
            ("white noise", torch.rand(right["brick"].shape, generator=torch.Generator().manual_seed(2))),
        ]
        for name, image in cases:
            print(row(name, canvases(image, size), exemplar, args.n_crops))
        if size != args.sizes[0]:
            continue
        print(f"colour exemplar (R brick, B gravel), {size} px samples")
        print(header)
        for judged in (True, False):
            how = "colour" if judged else "luminance"
            for name, image in (("same colours", colourful), ("colours swapped", swapped), ("luminance only", colourful.mean(1, keepdim=True))):
                print(row(f"{name} ({how})", canvases(image[..., 256:], size), colourful[..., :256], args.n_crops, colour=judged))
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
