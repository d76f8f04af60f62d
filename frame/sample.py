"""Draw new images from a trained model: ``frame-sample --ckpt last.ckpt --out samples.png``.

Runs the model's Langevin sampler (eq. 16) from the chosen initialisation and writes a PNG
grid (and, with ``--save-chains``, the raw chains as a .pt file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from frame.checkpoint import load_model

INITS = ("zeros", "noise", "buffer", "flat")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frame-sample", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (e.g. last.ckpt)")
    parser.add_argument("--out", default="samples.png", help="PNG grid to write")
    parser.add_argument("--n", type=int, default=16, help="number of images to draw")
    parser.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the model's steps per iteration)")
    parser.add_argument("--init", choices=INITS, default="buffer",
                        help="buffer = continue the saved chains (default), flat = a constant image at the mean "
                             "intensity of q(I)'s mean (Section 9's cold start; every chain starts alike), zeros = the "
                             "mean of q(I) (Algorithm 1), noise = uniform noise; from zeros or noise give --steps many "
                             "times the training's")
    parser.add_argument("--size", type=int, default=None, help="canvas side (stationary models only; default: the training canvas)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save-chains", action="store_true", help="also write the chains (input space) next to the PNG")
    return parser.parse_args(argv)


def initial_chains(model, init: str, n: int, size: int | None) -> torch.Tensor:
    saved = model.buffer.chains
    if init == "buffer":
        if size is not None and size != saved.shape[-1]:
            raise ValueError(f"--init buffer continues the saved {saved.shape[-1]}px chains; drop --size {size}")
        return saved[torch.arange(n, device=saved.device) % saved.shape[0]].clone()
    shape = (n, saved.shape[1], size or saved.shape[-2], size or saved.shape[-1])
    if init == "zeros":
        return torch.zeros(shape, device=saved.device)
    if init == "flat":  # the mean image of q(I) shown as an image, then its mean intensity everywhere
        mean_image = model.to_images(torch.zeros(1, *saved.shape[1:], device=saved.device))
        level = mean_image.mean(dim=(-2, -1), keepdim=True).expand(n, -1, *shape[-2:])
        return model.to_input(level)
    return model.to_input(torch.rand(shape, device=saved.device))



def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be >= 1")
    torch.manual_seed(args.seed)
    model = load_model(args.ckpt, device=args.device)
    chains = initial_chains(model, args.init, args.n, args.size)
    # The chains were learned warm-started: continuing them is the model's own sampling. Long
    # runs from scratch show the long-run behaviour of the learned density, which can differ.
    steps = args.steps if args.steps is not None else model.sampler.n_steps
    chains = model.sampler.sample(model.energy, chains, bounds=model.bounds(chains), n_steps=steps, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(model.to_images(chains).cpu(), out, nrow=max(1, int(args.n**0.5 + 0.5)))
    if args.save_chains:
        torch.save(chains.cpu(), out.with_suffix(".pt"))
    print(f"wrote {out} ({args.n} images, {steps} Langevin steps from {args.init})")
    return out


if __name__ == "__main__":
    main()
