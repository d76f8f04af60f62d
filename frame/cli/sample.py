"""frame-sample: draw new images from a trained model into a PNG grid.

    frame-sample --ckpt <run>/checkpoints/last.ckpt --out samples.png --n 16

Runs the model's Langevin sampling (eq. 16; coarse to fine for a multigrid model, whose start is
reduced to the coarsest scale's block means) from the chosen start (``frame.synthesis``):
``buffer`` continues the saved chains (the model's own sampling); ``flat``, ``zeros`` and
``noise`` start afresh and need many more --steps than training. ``--save-chains`` also
writes the raw chains (input space) next to the PNG as a .pt file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frame.choices import INITS
from frame.cli.common import add_ckpt, check_outputs, make_parser, positive_int, run

PROG = "frame-sample"


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_ckpt(p)
    p.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG grid to write")
    p.add_argument("--n", type=positive_int, default=16, help="number of images")
    p.add_argument("--batch-size", type=positive_int, default=None, help="chains run at once (default: all --n)")
    p.add_argument("--init", choices=INITS, default="buffer", help="where the chains start (see above)")
    p.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the model's steps per iteration)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="canvas side, larger for stationary models (default: the training canvas)")
    p.add_argument("--save-chains", action="store_true", help="also write the chains (input space) as <out>.pt")
    return p


def sample(args: argparse.Namespace) -> None:
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out}: the grid is a PNG file; give a path ending in .png")
    files = [args.out, args.out.with_suffix(".pt")] if args.save_chains else [args.out]
    check_outputs({"--ckpt": [args.ckpt]}, files=files)  # before Lightning loads: a bad --out answers at once

    import torch  # after parsing and checking: start-up time (frame.cli)

    from frame.grids import save_grid
    from frame.outputs import check_finite, write_file
    from frame.run.checkpoints import load_model
    from frame.synthesis import draw

    model = load_model(args.ckpt, device=args.device)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    chains = draw(model, args.n, args.init, args.steps, args.size, args.batch_size, generator, progress=True)
    check_finite(chains, "the sampled chains")
    images = model.to_images(chains).cpu()
    write_file(args.out, lambda tmp: save_grid(images, tmp, nrow=max(1, round(args.n**0.5))), [args.ckpt])
    if args.save_chains:
        write_file(files[1], lambda tmp: torch.save(chains.cpu(), tmp), [args.ckpt])
    steps = model.sampler.n_steps if args.steps is None else args.steps
    print(f"wrote {args.out} ({args.n} images, {steps} Langevin steps from {args.init})")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), sample, argv)


if __name__ == "__main__":
    sys.exit(main())
