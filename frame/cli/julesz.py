"""frame-julesz: sample the Julesz ensemble of a texture (Appendix B, eq. 30-32), with no learning.

    frame-julesz --input ../shared/data/textures/frame_gray/stucco.bmp --out stucco_julesz.png
    frame-julesz --input fur.jpg --out fur_vgg.png --stats vgg --n 2 --size 192

Takes the statistics H_obs of the texture (grey, resized to cover --image-size and centre-cropped;
several --input: averaged over them): the marginal histograms of the Gabor/DoG/delta bank
(``--stats linear``, what ``model=linear_stationary`` matches, eq. 5) or the spatial means of
VGG-16 conv1_2, conv2_2, conv3_3 on grey images (``--stats vgg``, what ``model=stationary``
matches, eq. 10; needs the Caffe weights, ``frame-fetch-weights``). Then anneals --n white-noise
images with the texture's mean and contrast until their statistics equal H_obs (``frame.julesz``:
Langevin at falling temperatures, then L-BFGS at T = 0). Writes one PNG, the observed texture
first and the samples after it, and prints the relative gap ||H - H_obs|| / ||H_obs||.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from frame.cli.common import add_input, check_outputs, make_parser, positive_int, run

if TYPE_CHECKING:
    import torch

PROG = "frame-julesz"
VGG_LAYERS = ("conv1_2", "conv2_2", "conv3_3")
#: eps (per unit of the texture's variance) for each kind of statistics: VGG means are steeper
EPS = {"linear": 1.25, "vgg": 0.1}


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_input(p, "texture image file or folder (repeatable: the statistics are averaged)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write: the observed texture, then the samples")
    p.add_argument("--stats", choices=("linear", "vgg"), default="linear",
                   help="linear: histograms of the Gabor/DoG/delta bank (eq. 5); vgg: means of VGG-16 conv1_2, conv2_2, conv3_3")
    p.add_argument("--n", type=positive_int, default=1, help="samples to draw")
    p.add_argument("--image-size", type=positive_int, default=128, help="side the texture is resized and cropped to")
    p.add_argument("--size", type=positive_int, default=None, help="side of the samples (default: --image-size)")
    p.add_argument("--bins", type=positive_int, default=16, help="histogram bins per filter (--stats linear)")
    p.add_argument("--eps", type=float, default=None,
                   help=f"step per unit of the texture's variance (default: {EPS['linear']} linear, {EPS['vgg']} vgg)")
    p.add_argument("--levels", type=int, default=4, help="temperatures with noise, from 1e-2 to 1e-4")
    p.add_argument("--steps-per-level", type=int, default=50, help="Langevin steps at each temperature")
    p.add_argument("--final-steps", type=int, default=400, help="evaluations of the mismatch at T = 0 (L-BFGS)")
    return p


def statistics(kind: str, bins: int, device: torch.device):
    """The energy whose statistics are matched (only its ``statistics`` and input space are used)."""
    # here and below: after parsing, for start-up time (frame.cli)
    from frame.energies import LinearStationaryEnergy, StationaryEnergy
    from frame.nets import FilterBank, VGG16Features

    if kind == "linear":
        if bins < 2:
            raise ValueError(f"--bins must be >= 2, got {bins}")
        return LinearStationaryEnergy(FilterBank(), bins=bins).to(device)
    return StationaryEnergy(VGG16Features(list(VGG_LAYERS), source="caffe", grey=True)).to(device)


def julesz(args: argparse.Namespace) -> None:
    import torch

    from frame.data.images import list_images, load_images, to_tensor
    from frame.grids import save_grid
    from frame.julesz import JuleszSampler
    from frame.outputs import check_finite, write_file

    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out}: the samples are written as one PNG; give a path ending in .png")
    check_outputs({"--input": args.input}, files=[args.out])
    eps = EPS[args.stats] if args.eps is None else args.eps
    sampler = JuleszSampler(eps=eps, levels=args.levels, steps_per_level=args.steps_per_level, final_steps=args.final_steps)
    images = to_tensor(load_images(list_images(args.input)), args.image_size, grayscale=True)[:, :1].to(args.device)
    energy = statistics(args.stats, args.bins, args.device)
    observed = energy.input_space.to_input(images)
    energy.fit(observed)
    size = args.size or args.image_size
    energy.extractor.check_image_size(size, "--size" if args.size else "--image-size")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    start = time.perf_counter()
    chains = sampler.sample(energy, observed, n=args.n, size=size, generator=generator)
    minutes = (time.perf_counter() - start) / 60
    gap = sampler.gap(energy, chains, sampler.observed_statistics(energy, observed))
    samples = energy.input_space.to_images(chains).clamp(0, 1).cpu()
    grid = [images[:1].cpu().expand(-1, 3, -1, -1), samples]
    check_finite(samples, "the samples")
    if images.shape[-1] == size:
        picture, nrow = torch.cat(grid), args.n + 1
    else:  # samples of another side: the observed texture is not in the grid
        picture, nrow = samples, args.n
    write_file(args.out, lambda tmp: save_grid(picture, tmp, nrow=nrow), list_images(args.input))
    print(f"gap {gap:.4f} (||H - H_obs|| / ||H_obs||, {args.stats} statistics, {args.n} sample(s) of {size} px, "
          f"{minutes:.1f} min)")
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), julesz, argv)


if __name__ == "__main__":
    sys.exit(main())
