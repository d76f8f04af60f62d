"""frame-blind: can a person tell the samples from real images? A numbered sheet, its key, the score.

    frame-blind --ckpt <run>/checkpoints/last.ckpt --out blind/  # blind/sheet.png, blind/key.json
    frame-blind --samples my_samples/ --data lfw_faces --out blind/
    frame-blind --key blind/key.json --answer 3,5,8,12             # the tiles you call samples

The sheet shuffles --n samples (the checkpoint's chains, as frame-eval takes them) with --n
real images (--data, else the run's training images, at the samples' size) into numbered
tiles, enlarged without smoothing. Look at blind/sheet.png only, name the tiles you take for
samples, then score the answer against the key: the accuracy over all tiles with its 95%
interval and the p-value of "better than chance" (frame.eval.blind). 0.5 = the person cannot
tell them apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from frame.cli.common import check_outputs, make_parser, positive_int, run
from frame.outputs import write_file, write_text

PROG = "frame-blind"
#: a key is a few hundred bytes; anything far larger is not one
MAX_KEY_BYTES = 1 << 20


def tiles(value: str) -> list[int]:
    """``3,5,8``: the tiles named (an empty string names none)."""
    try:
        return [int(tile) for tile in value.replace(" ", "").split(",") if tile]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected tile numbers separated by commas, e.g. 3,5,8, got {value!r}") from None


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", type=Path, help="checkpoint written by train.py: its chains are the samples")
    what.add_argument("--samples", type=Path, action="append", metavar="PATH", help="sample image files or folders (repeatable)")
    what.add_argument("--key", type=Path, help="score an answer against this key (written with the sheet)")
    p.add_argument("--answer", type=tiles, default=None, help="--key: the tiles you call samples, e.g. 3,5,8")
    p.add_argument("--data", help="real images: a folder, an image file or an embedded name (default: the run's training images)")
    p.add_argument("--image-size", type=positive_int, default=None, help="side of the real images (default: the run's, else the samples')")
    p.add_argument("--n", type=positive_int, default=16, help="samples on the sheet, and as many real images")
    p.add_argument("--out", type=Path, default=Path("blind"), help="folder for sheet.png and key.json")
    return p


def make_sheet(args: argparse.Namespace) -> None:
    from frame.cli.eval import checkpoint_samples, file_samples, reference_images, reference_source, sample_reads
    from frame.run.checkpoints import existing_file  # after parsing: start-up time (frame.cli)

    sheet_path, key_path = args.out / "sheet.png", args.out / "key.json"
    reads = sample_reads(args)
    check_outputs(reads, files=[sheet_path, key_path], folder=args.out)
    if args.ckpt is not None:
        existing_file(args.ckpt)

    from frame.eval.blind import sheet, shuffle

    source, size, where = reference_source(args)
    draw = argparse.Namespace(**{**vars(args), "n": None, "steps": None, "init": "buffer", "batch_size": None})
    samples, made = checkpoint_samples(draw) if args.ckpt is not None else file_samples(draw)
    real = reference_images(source, size, samples)
    images, is_sample = shuffle(samples.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1), args.n, args.seed)
    read = [path for paths in reads.values() for path in paths]
    write_file(sheet_path, sheet(images).save, reads=read)
    key = {"is_sample": is_sample, "samples": made, "real": where, "seed": args.seed}
    write_text(key_path, json.dumps(key, indent=1) + "\n", reads=read)
    print(f"wrote {sheet_path} ({len(is_sample)} tiles: {args.n} samples, {args.n} real images) and its key {key_path}")
    print(f"look at the sheet only, then: {PROG} --key {key_path} --answer <the tiles you call samples, e.g. 3,5,8>")


def score_answer(args: argparse.Namespace) -> None:
    from frame.eval.blind import check_key, score

    if args.answer is None:
        raise ValueError("--key scores an answer: give --answer with the tiles you call samples, e.g. 3,5,8")
    with open(args.key, "rb") as file:  # at most a little more than a key holds, whatever the file (a device, a pipe)
        text = file.read(MAX_KEY_BYTES + 1)
    if len(text) > MAX_KEY_BYTES:
        raise ValueError(f"{args.key}: not a blind-test key (over {MAX_KEY_BYTES} bytes)")
    try:
        key = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{args.key}: not a blind-test key ({err})") from None
    result = score(check_key(key, str(args.key)), args.answer)
    low, high = result.accuracy_interval
    half = result.n_tiles // 2
    print(f"accuracy {result.accuracy:.3f} [{low:.3f}, {high:.3f}] over {result.n_tiles} tiles (0.5 = cannot tell), "
          f"p = {result.p_value:.2g}; samples found {result.samples_found}/{half}, real kept {result.real_kept}/{half}")


def blind(args: argparse.Namespace) -> None:
    if args.key is not None:
        score_answer(args)
    else:
        make_sheet(args)


def main(argv: list[str] | None = None) -> int:
    return run(parser(), blind, argv)


if __name__ == "__main__":
    sys.exit(main())
