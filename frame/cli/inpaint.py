"""frame-inpaint: recover missing pixels with a trained model (paper, Section 9, Table 2).

    frame-inpaint --ckpt last.ckpt --input photos/ --masks masks/ --out recovered/
    frame-inpaint --ckpt last.ckpt --input photos/ --mask-size 40 --seed 0 --out recovered/

The missing pixels are sampled from p(I_M | I_notM; w) by the model's Langevin sampler
(eq. 16) with the observed pixels held fixed (``frame.recovery.inpaint``: each image is
resized to the model's canvas, recovered there, and only its missing pixels are pasted back).
Masks come from a folder of PNGs (--masks; white = missing), named like the images below
their --input (photos/a/b.jpg -> masks/a/b.png), or are random squares (--mask-size, drawn
from --seed). With several --input, names start with each input folder's name.

Writes, in --out (which must lie outside every --input and --masks):
  images/<name>     the recovered image (grey inputs give grey outputs);
  masks/<name>.png  with --mask-size, the masks drawn, so that --masks <out>/masks repeats
                    the run;
  grid.png          one row per image: original | masked (holes white) | recovered.
Every image and mask is read and checked before the sampling starts (then only the masks are
held, as bits: each image is read again when its turn comes).
A model trained with ``model.buffer.start: exemplars`` starts each hole from the nearest of
its training images, which the checkpoint does not hold: give them with --bank.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from frame.choices import STARTS
from frame.cli.common import add_ckpt, add_input, check_outputs, make_parser, positive_float, positive_int, run
from frame.outputs import check_finite, write_file

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

PROG = "frame-inpaint"


class MaskError(ValueError):
    """A mask file that is missing, unreadable, of the wrong size or not black-and-white."""


# -- files ---------------------------------------------------------------------------------------
def named_images(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(image, name) for every image of the --input paths; the name is its path below its
    --input folder (a file: its own name), under that folder's name when there are several."""
    from frame.data import list_images  # here and below: after parsing, for start-up time (frame.cli)

    items, seen, names = [], set(), {}
    for root in inputs:
        base = root if root.is_dir() else root.parent
        for path in list_images(root):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = path.relative_to(base)
            if len(inputs) > 1 and root.is_dir():
                name = Path(root.resolve().name) / name
            for key, kind in ((name, "output"), (name.with_suffix(".png"), "mask")):
                if (key, kind) in names:
                    raise ValueError(f"{names[key, kind]} and {path} would share the {kind} name {key}: rename one")
                names[key, kind] = path
            items.append((path, name))
    return items


def read_image(path: Path) -> tuple[Tensor, bool]:
    """``[3, h, w]`` uint8 and whether the image is grey (all channels equal)."""
    import numpy as np
    import torch

    from frame.data import load_image

    tensor = torch.from_numpy(np.array(load_image(path), dtype=np.uint8)).permute(2, 0, 1).contiguous()
    grey = bool((tensor[0] == tensor[1]).all() and (tensor[1] == tensor[2]).all())
    return tensor, grey


def read_mask(path: Path, size: tuple[int, int], image: Path) -> Tensor:
    """A mask file as ``[1, h, w]`` bool (white = missing); checks size and that it is binary."""
    import numpy as np
    import torch
    from PIL import Image

    if not path.is_file():
        raise MaskError(f"no mask for image {image}: expected {path}")
    try:
        with Image.open(path) as handle:
            if handle.size != (size[1], size[0]):
                raise MaskError(f"mask {path} is {handle.size[0]}x{handle.size[1]} (WxH) but image {image} is "
                                f"{size[1]}x{size[0]}: a mask must have its image's size")
            handle.load()
            grey = np.asarray(handle.convert("L"), dtype=np.uint8)
    except MaskError:
        raise
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


def write_image(image: Tensor, path: Path, grey: bool, reads: list[Path]) -> None:
    import torch
    from PIL import Image

    check_finite(image, f"the recovered image for {path}")
    array = image.clamp(0, 1).mul_(255.0).add_(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if grey else array, mode="L" if grey else "RGB")
    write_file(path, lambda tmp: picture.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG")),
               reads)


# -- the command ---------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_ckpt(p)
    add_input(p, "image file or folder (searched recursively); repeatable")
    masks = p.add_mutually_exclusive_group(required=True)
    masks.add_argument("--masks", type=Path, help="folder of PNG masks named like the images (white = missing)")
    masks.add_argument("--mask-size", type=positive_int, help="side in pixels of one random square mask per image")
    p.add_argument("--out", type=Path, required=True, help="folder for images/, masks/ and grid.png")
    p.add_argument("--steps", type=int, default=None, help="Langevin steps (default: the model's recovery.test_steps, else its training L)")
    p.add_argument("--step-size", type=positive_float, default=None,
                   help="Langevin step size (default: the model's recovery.test_step_size, else its sampler's)")
    p.add_argument("--n-chains", type=positive_int, default=1, help="chains per image, averaged")
    p.add_argument("--start", choices=STARTS, default=None,
                   help="hole start: mean, harmonic or exemplars (default: the model's recovery training start, else mean)")
    p.add_argument("--bank", type=Path, nargs="+", default=None,
                   help="folders/files of images the exemplars start takes the nearest from (the model's training images)")
    p.add_argument("--no-noise", action="store_true", help="drop the Langevin noise (descend to the mode)")
    p.add_argument("--grayscale", action="store_true", help="recover in grey (for models trained on grey images)")
    p.add_argument("--grid-max", type=positive_int, default=32, help="at most this many rows in grid.png")
    return p


def read_items(args: argparse.Namespace) -> list[tuple[Path, Path, bool, np.ndarray]]:
    """(image, name, grey, missing) for every image, every file read and checked.

    The pixels are not held (they are read again, one image at a time, when it is recovered):
    what stays in memory per image is its mask, as packed bits (``np.packbits``).
    """
    import numpy as np
    import torch

    from frame.recovery.masks import square_masks

    if args.masks is not None and not args.masks.is_dir():
        raise NotADirectoryError(f"--masks {args.masks} is not a folder")
    items = []
    generator = torch.Generator().manual_seed(args.seed)
    for path, name in named_images(args.input):
        image, grey = read_image(path)
        size = tuple(image.shape[-2:])
        del image
        if args.masks is not None:
            missing = read_mask(args.masks / name.with_suffix(".png"), size, path)
        else:
            try:
                missing = square_masks(1, size, args.mask_size, generator=generator)[0]
            except ValueError as err:
                raise ValueError(f"--mask-size {args.mask_size} does not fit image {path}: {err}") from None
        items.append((path, name, grey, np.packbits(missing.numpy(), axis=-1)))
    return items


def unpacked(bits: np.ndarray, width: int) -> Tensor:
    """A mask packed by :func:`read_items` as ``[1, h, w]`` bool."""
    import numpy as np
    import torch

    return torch.from_numpy(np.unpackbits(bits, axis=-1, count=width).astype(bool))


def inpaint(args: argparse.Namespace) -> None:
    import torch

    from frame.data import list_images, load_images, to_tensor
    from frame.grids import save_grid
    from frame.progress import progress_bar, say
    from frame.recovery.inpaint import inpaint_image, recovery_start, resize, resize_mask
    from frame.run.checkpoints import load_model
    from frame.synthesis import canvas_side

    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    reads = {"--ckpt": [args.ckpt], "--input": args.input, "--masks": [args.masks] if args.masks else [],
             "--bank": args.bank or []}
    check_outputs(reads, folder=args.out)
    items = read_items(args)
    model = load_model(args.ckpt, device=args.device)
    start = args.start or recovery_start(model)
    if args.bank and start != "exemplars":
        warnings.warn(f"--bank is left unread: the holes start at the {start} fill, not the exemplars one")
    bank = to_tensor(load_images(list_images(args.bank)), canvas_side(model)) if args.bank and start == "exemplars" else None
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    rows = []
    inputs = [args.ckpt, *(path for path, *_ in items)]
    for path, name, grey, bits in progress_bar(items, "recovering", unit="image"):
        pixels, _ = read_image(path)
        image = pixels.float().div_(255)
        del pixels
        missing = unpacked(bits, image.shape[-1])
        if missing.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"{path} changed size since it was read: run again")
        recovered, canvas = inpaint_image(
            model, image, missing, grayscale=args.grayscale or grey, n_steps=args.steps,
            n_chains=args.n_chains, noise=False if args.no_noise else None, generator=generator, start=args.start,
            step_size=args.step_size, bank=bank,
        )
        target = args.out / "images" / name
        write_image(recovered, target, grey, inputs)
        if args.masks is None:
            mask_file = args.out / "masks" / name.with_suffix(".png")
            write_file(mask_file, lambda tmp: save_grid(missing.float(), tmp), inputs)
        if len(rows) < 3 * args.grid_max:
            small = resize(image[None], canvas_side(model))[0].clamp(0, 1)
            holes = resize_mask(missing[None], canvas_side(model))[0]
            rows += [small, torch.where(holes, torch.ones_like(small), small), canvas]
        say(f"{path} -> {target}")
        del image, recovered  # before the next image is read: one image's floats at a time
    write_file(args.out / "grid.png", lambda tmp: save_grid(torch.stack(rows), tmp, nrow=3, padding=2, pad_value=1.0), inputs)
    print(f"wrote {len(items)} recovered images and {args.out / 'grid.png'}")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), inpaint, argv)


if __name__ == "__main__":
    sys.exit(main())
