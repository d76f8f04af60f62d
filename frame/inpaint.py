"""Recover missing pixels with a trained model: ``frame-inpaint --ckpt last.ckpt --input imgs/ ...``.

The missing pixels I_M are sampled from p(I_M | I_notM; w) by the model's own Langevin sampler
(eq. 16) with the observed pixels I_notM held fixed (paper, Section 9). Masks come either from
a folder of PNGs (``--masks``; same file names, white = missing) or are random squares
(``--mask-size N --seed S``; written to ``<out>/masks/`` so the run can be repeated).

What happens to each image:

1. it is resized (whole image, aspect not kept) to the model's canvas, and its mask with it:
   a canvas pixel counts as missing as soon as any missing pixel falls into it;
2. the missing canvas pixels start at the mean of the observed ones (the conditional "cold
   start") or at their harmonic interpolation (``--start harmonic``; the default is the start
   the model was trained for recovery with) and ``--steps`` Langevin steps move only them;
   with ``--n-chains K`` K chains are run and their images averaged;
3. the recovered canvas is resized back to the image's size and **only the missing pixels**
   are pasted into the original: every observed pixel of the output is the input's, exactly.

Outputs: ``<out>/<same file name>`` per image (grey inputs give grey outputs) and
``<out>/grid.png`` (one row per image: original | masked (holes white) | recovered).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.utils import save_image

from frame.checkpoint import load_model
from frame.data import list_images, load_image
from frame.masks import STARTS, fill_missing, square_masks, start_chains
from frame.models.base import FrameModel


class MaskError(ValueError):
    """A mask file that is missing, unreadable, of the wrong size or not black-and-white."""


def inpaint(
    model: FrameModel,
    images: Tensor,
    missing: Tensor,
    n_steps: int | None = None,
    n_chains: int = 1,
    noise: bool | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    start: str | None = None,
) -> Tensor:
    """Samples the missing pixels of ``images`` from p(I_M | I_notM; w).

    Args:
        model: any trained ``FrameModel``.
        images: ``[B, 3, H, W]`` RGB in [0, 1], at a size the model accepts (its canvas).
        missing: ``[B, 1, H, W]`` (or broadcastable) bool, True = missing.
        n_steps: Langevin steps (default: the model's L, as in training for recovery).
        n_chains: independent chains per image whose images are averaged.
        noise: override the sampler's noise term (``False``: gradient descent on U, the mode).
        generator: source of the Langevin noise.
        start: ``mean`` or ``harmonic`` (``frame.masks.start_chains``); default: the start the
            model was trained for recovery with (``model.recovery.start``), else ``mean``.
    Returns:
        ``[B, 3, H, W]`` in [0, 1]; equal to ``images`` on every observed pixel, exactly.
    """
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    device = model.buffer.chains.device
    images = images.to(device=device, dtype=torch.float32)
    missing = missing.to(device=device, dtype=torch.bool).expand(images.shape[0], 1, *images.shape[-2:])
    if start is None:
        start = model.recovery.start if model.recovery is not None else "mean"
    start = start_chains(model.to_input(images), missing, start, model.energy.preprocessing)
    sampler = model.sampler
    saved_noise = sampler.noise
    if noise is not None:
        sampler.noise = bool(noise)
    try:
        total = torch.zeros_like(images)
        for _ in range(n_chains):
            chains = sampler.sample(
                model.energy, start, mask=missing, bounds=model.bounds(start), n_steps=n_steps,
                progress=progress, generator=generator,
            )
            total += model.to_images(chains).detach()
    finally:
        sampler.noise = saved_noise
    return torch.where(missing, total / n_chains, images)


def model_size(model: FrameModel) -> tuple[int, int]:
    """(H, W) of the model's canvas, the size images are resized to."""
    return tuple(model.buffer.chains.shape[-2:])


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of ``[B, C, h, w]`` images (identity at the same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_mask(missing: Tensor, size: tuple[int, int]) -> Tensor:
    """A pixel of the resized mask is missing when any missing pixel falls into it."""
    if tuple(missing.shape[-2:]) == tuple(size):
        return missing.bool()
    h, w = missing.shape[-2:]
    m = missing.float()
    if size[0] >= h and size[1] >= w:  # upscaling: each target pixel inside one source pixel
        return F.interpolate(m, size=size, mode="nearest") > 0
    return F.adaptive_max_pool2d(m, size) > 0 if size[0] <= h and size[1] <= w else resize(m, size) > 0


def inpaint_image(
    model: FrameModel,
    image: Tensor,
    missing: Tensor,
    grayscale: bool = False,
    **kwargs,
) -> tuple[Tensor, Tensor]:
    """One image of any size: ``image`` [3, h, w] in [0, 1], ``missing`` [1, h, w] bool.

    Returns (recovered [3, h, w] with the input's pixels outside the mask, the recovered
    canvas [3, H, W] at the model's size, for display).
    """
    size = model_size(model)
    # whatever the missing pixels hold (a painted hole, say) must not leak into the resized
    # observed pixels next to the hole: they are set to the observed mean before resizing
    small = resize(fill_missing(image[None], missing[None]), size).clamp(0, 1)
    if grayscale:
        small = small.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    small_missing = resize_mask(missing[None], size)
    canvas = inpaint(model, small, small_missing, **kwargs)[0].cpu()
    back = resize(canvas[None], tuple(image.shape[-2:]))[0].clamp(0, 1)
    if grayscale:
        back = back.mean(dim=0, keepdim=True).expand(3, -1, -1)
    return torch.where(missing.bool(), back, image), canvas


# -- files ---------------------------------------------------------------------------------------
def read_image(path: Path) -> tuple[Tensor, bool]:
    """``[3, h, w]`` float in [0, 1] and whether the image is grey (all channels equal)."""
    array = np.asarray(load_image(path), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    grey = bool((tensor[0] == tensor[1]).all() and (tensor[1] == tensor[2]).all())
    return tensor, grey


def mask_path_for(name: Path, masks: Path, image: Path) -> Path:
    """``masks/<name>.png``: the image's path below --input with a .png suffix."""
    candidate = masks / name.with_suffix(".png")
    if not candidate.is_file():
        raise MaskError(f"no mask for image {image}: expected {candidate}")
    return candidate


def read_mask(path: Path, size: tuple[int, int], image: Path) -> Tensor:
    """A mask file as ``[1, h, w]`` bool (white = missing); checks size and that it is binary."""
    try:
        with Image.open(path) as handle:
            handle.load()
            grey = np.asarray(handle.convert("L"), dtype=np.uint8)
    except Exception as err:
        raise MaskError(f"cannot read mask {path}: {type(err).__name__}: {err}") from err
    if grey.shape != tuple(size):
        raise MaskError(
            f"mask {path} is {grey.shape[1]}x{grey.shape[0]} (WxH) but image {image} is {size[1]}x{size[0]}: "
            "a mask must have its image's size"
        )
    grey_levels = ((grey > 32) & (grey < 223)).mean()
    if grey_levels > 0.01:
        raise MaskError(
            f"mask {path} is not black-and-white ({100 * grey_levels:.1f}% of its pixels are grey): "
            "use white (255) for missing pixels and black (0) for observed ones"
        )
    return torch.from_numpy(grey >= 128)[None]


def write_image(image: Tensor, path: Path, grey: bool) -> None:
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    picture = Image.fromarray(array[..., 0] if grey else array, mode="L" if grey else "RGB")
    picture.save(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="frame-inpaint", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (e.g. last.ckpt)")
    parser.add_argument("--input", required=True, help="folder of images (searched recursively)")
    masks = parser.add_mutually_exclusive_group(required=True)
    masks.add_argument("--masks", help="folder of PNG masks named like the images (white = missing)")
    masks.add_argument("--mask-size", type=int, help="side in pixels of one random square mask per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks and of the Langevin noise")
    parser.add_argument("--out", required=True, help="folder for the recovered images and grid.png")
    parser.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the model's training L)")
    parser.add_argument("--n-chains", type=int, default=1, help="chains per image, averaged")
    parser.add_argument("--start", choices=STARTS, default=None,
                        help="hole start: mean or harmonic (default: the model's recovery training start, else mean)")
    parser.add_argument("--no-noise", action="store_true", help="drop the Langevin noise (descend to the mode)")
    parser.add_argument("--grayscale", action="store_true", help="recover in grey (for models trained on grey images)")
    parser.add_argument("--grid-max", type=int, default=32, help="at most this many rows in grid.png")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.n_chains < 1:
        raise SystemExit("--n-chains must be >= 1")
    source, out = Path(args.input), Path(args.out)
    if not source.is_dir():
        raise SystemExit(f"--input {source} is not a folder")
    paths = list_images(source)
    if args.masks is not None and not Path(args.masks).is_dir():
        raise SystemExit(f"--masks {args.masks} is not a folder")
    if out.resolve() == source.resolve():
        raise SystemExit("--out must differ from --input")
    # read and check every image and mask before the (slow) sampling starts
    items = []
    mask_generator = torch.Generator().manual_seed(args.seed)
    for path in paths:
        image, grey = read_image(path)
        if args.masks is not None:
            mask_file = mask_path_for(path.relative_to(source), Path(args.masks), path)
            missing = read_mask(mask_file, tuple(image.shape[-2:]), path)
        else:
            missing = square_masks(1, tuple(image.shape[-2:]), args.mask_size, generator=mask_generator)[0]
        items.append((path, image, grey, missing))
    model = load_model(args.ckpt, device=args.device)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, image, grey, missing in items:
        name = path.relative_to(source)
        recovered, canvas = inpaint_image(
            model, image, missing, grayscale=args.grayscale or grey, n_steps=args.steps,
            n_chains=args.n_chains, noise=False if args.no_noise else None, generator=generator, start=args.start,
        )
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(recovered, target, grey)
        if args.masks is None:
            mask_file = out / "masks" / name.with_suffix(".png")
            mask_file.parent.mkdir(parents=True, exist_ok=True)
            save_image(missing.float(), mask_file)
        if len(rows) < args.grid_max:
            size = model_size(model)
            small = resize(image[None], size)[0].clamp(0, 1)
            holes = resize_mask(missing[None], size)[0]
            rows += [small, torch.where(holes, torch.ones_like(small), small), canvas]
        print(f"{path} -> {target}")
    save_image(torch.stack(rows), out / "grid.png", nrow=3, padding=2, pad_value=1.0)
    print(f"wrote {len(items)} recovered images and {out / 'grid.png'}")
    return out


if __name__ == "__main__":
    main()
