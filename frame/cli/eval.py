"""frame-eval: how good are a model's samples? One table of frame.eval's metrics, and a JSON file.

    frame-eval --ckpt <run>/checkpoints/last.ckpt                 # the saved chains vs the run's data
    frame-eval --ckpt last.ckpt --steps 200 --n 64 --data faces/  # 64 fresh samples vs a folder
    frame-eval --samples my_samples/ --data lfw_faces             # image files vs an embedded set

Samples: with --ckpt, the chains saved in the checkpoint (the first --n), or with --steps N,
--n fresh chains after N Langevin steps from --init (frame.synthesis; buffer continues the
saved chains); with --samples, image files or folders, one sample each, read at the size of
the first (never rescaled otherwise).

Reference: --data (a folder, an image file or an embedded name such as lfw_faces or brick),
else the training images of the run the checkpoint belongs to, rebuilt from the plain data
keys (root, embedded, image_size, grayscale) of <run>/.hydra/config.yaml. Grey samples get a
grey reference. --kind auto scores objects (KID, Fréchet distance, precision, recall,
density, coverage, distinct samples, pixel checks) when the reference holds at least 12
images, else texture (Gram and sliced Wasserstein distances on crops, pixel checks).

Beside them, measures in pixels that owe nothing to VGG-16 (frame.eval.c2st, spectra,
copies): c2st_acc and c2st_auc, how well a small convnet trained from scratch tells the
samples from real images (held out, with a 95% interval; 0.5 = it cannot tell them apart; --no-c2st
leaves these slow rows out), spectrum and grid_peak (power spectra; a grid shows as a
grid_peak above 1.5), copies and copy_ratio (near-copies of training images). Where the
classifier's interval holds 0.5, a line under the table says that it could not tell, which does
not say that a person cannot (frame-blind).

Every metric is printed next to its floor (real images against real images) and its
ceiling (white noise). The VGG rows (marked VGG*) are VGG-16 feature distances (--vgg-source:
the ImageNet Caffe weights, fetched once like train.py's), not Inception FID: not comparable
with published FIDs, and computed on the network whose features the model is trained on.
The JSON (--out; default <ckpt>_eval.json, or <samples>_eval.json next to the first
--samples path) holds the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frame.choices import EMBEDDED_IMAGES, INITS
from frame.cli.common import check_outputs, make_parser, positive_int, run
from frame.outputs import write_text
from frame.runs import MAX_IMAGE_SIDE

if TYPE_CHECKING:
    import torch

    from frame.eval.report import Score

PROG = "frame-eval"
KIND_CHOICES = ("auto", "objects", "texture")


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", type=Path, help="checkpoint written by train.py: its chains (or fresh ones) are the samples")
    what.add_argument("--samples", type=Path, action="append", metavar="PATH",
                      help="an image file or a folder of samples (searched recursively); repeatable")
    p.add_argument("--data", help="reference images: a folder, an image file or an embedded name "
                   f"({', '.join(EMBEDDED_IMAGES)}); default: the run's training images")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="side of the reference images (default: the run's data.image_size, else the samples' shorter side)")
    p.add_argument("--kind", choices=KIND_CHOICES, default="auto", help="objects, texture, or auto (see above)")
    p.add_argument("--n", type=positive_int, default=None,
                   help="number of samples (default: every saved chain or file; with --steps, as many as the saved chains)")
    p.add_argument("--steps", type=int, default=None, help="--ckpt: draw fresh samples with this many Langevin steps")
    p.add_argument("--init", choices=INITS, default="buffer", help="--steps: where the fresh chains start")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per Langevin batch and per VGG-16 pass (default: every chain at once, 50 images per pass)")
    p.add_argument("--n-crops", type=positive_int, default=64, help="texture: crops per compared set")
    p.add_argument("--no-c2st", dest="c2st", action="store_false",
                   help="leave out the two-sample classifier (c2st_acc, c2st_auc, c2st_bits): the slow rows")
    p.add_argument("--faces", choices=("auto", "on", "off"), default="auto",
                   help="the face judge (face_auc): auto = where a face detector finds the reference images to be faces")
    p.add_argument("--vgg-source", default="caffe",
                   help="the judge's VGG-16 weights: caffe, torchvision, a state-dict path, or random (dry runs only)")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (default: see above)")
    return p


# ---------------------------------------------------------------------------- samples


def is_grey(images: torch.Tensor) -> bool:
    return images.shape[1] == 1 or bool((images.amax(1) - images.amin(1)).max() <= 1 / 255)


def sample_reads(args: argparse.Namespace) -> dict[str, list[Path]]:
    """What the command reads, by flag: --ckpt or --samples, and --data where it names files (not an embedded set)."""
    reads = {"--ckpt": [args.ckpt]} if args.ckpt is not None else {"--samples": args.samples}
    if args.data is not None and Path(args.data).exists():
        reads["--data"] = [Path(args.data)]
    return reads


def checkpoint_samples(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """The checkpoint's chains (or fresh ones) as images in [0, 1], and how they were made."""
    import torch  # here and below: after parsing, for start-up time (frame.cli)

    from frame.run.checkpoints import load_model
    from frame.synthesis import draw

    model = load_model(args.ckpt, device=args.device)
    saved = model.buffer.chains
    if args.steps is None:
        n = min(args.n or len(saved), len(saved))
        chains, how = saved[:n], f"{n} chains saved in {args.ckpt}"
    else:
        n = args.n or len(saved)
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        chains = draw(model, n, args.init, args.steps, batch_size=args.batch_size, generator=generator)
        how = f"{n} chains after {args.steps} Langevin steps from {args.init} ({args.ckpt})"
    with torch.no_grad():
        return model.to_images(chains).detach().float().cpu(), how


def file_samples(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """The sample files (at most --n) at the size of the first."""
    from frame.data.images import list_images, load_readable, to_tensor

    files = list_images(args.samples)[: args.n]
    images = [image for _, image in load_readable(files, "fail")]
    width, height = images[0].size
    return to_tensor(images, (height, width)), f"{len(images)} files from {', '.join(map(str, args.samples))}"


# ---------------------------------------------------------------------------- reference


def reference_source(args: argparse.Namespace) -> tuple[dict[str, Any], int | None, str]:
    """The data keys of the reference images, their side (None: the samples' shorter side), and where they
    come from: --data, else the plain data keys of the run's config, checked before a model or image loads."""
    from frame.runs import data_config, run_of

    if args.data is not None:
        source: dict[str, Any] = {"embedded": args.data} if args.data in EMBEDDED_IMAGES else {"root": args.data}
        if args.data not in EMBEDDED_IMAGES and not Path(args.data).exists():
            raise FileNotFoundError(2, f"no such file or folder (nor an embedded name: {', '.join(EMBEDDED_IMAGES)})",
                                    args.data)
        return source, args.image_size, f"--data {args.data}"
    run_dir = run_of(args.ckpt) if args.ckpt is not None else None
    if run_dir is None:
        what = f"{args.ckpt} is not in a run folder (<run>/checkpoints/)" if args.ckpt else "--samples has no run"
        raise ValueError(f"{what}: give the reference images with --data")
    source = data_config(run_dir)
    config_size = source.pop("image_size", None)
    return source, args.image_size or config_size, f"the training images of {run_dir} (data.{'root' if 'root' in source else 'embedded'})"


def reference_images(source: dict[str, Any], size: int | None, samples: torch.Tensor) -> torch.Tensor:
    """The reference images of `source` in [0, 1], at `size` (else the samples' shorter side); grey for grey samples."""
    from frame.data import ImageDataModule

    if is_grey(samples):  # grey chains are judged against grey images
        source = {**source, "grayscale": True}
    datamodule = ImageDataModule(image_size=size or min(samples.shape[-2:]), **source)
    datamodule.setup()
    return datamodule.observed_images()


# ---------------------------------------------------------------------------- the command


#: the table's judge column, in words
JUDGES = {"VGG*": "VGG features the model is trained on", "face net": "a face detector trained on other faces"}


def as_json(results: dict[str, Score]) -> dict[str, dict[str, Any]]:
    """One entry per metric; nan (a position whose floor equals its ceiling) becomes null."""
    from frame.eval.report import HIGHER_IS_BETTER, judge

    def number(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else x

    return {
        name: {
            "value": number(score.value), "std": number(score.std), "floor": number(score.floor),
            "ceiling": number(score.ceiling), "position": number(score.position),
            "better": "higher" if name in HIGHER_IS_BETTER else "lower",
            "interval": None if score.interval is None else [number(x) for x in score.interval],
            "judge": JUDGES.get(judge(name), "pixels"),
        }
        for name, score in results.items()
    }


def chance_note(results: dict[str, Score]) -> str | None:
    """A line for a classifier whose interval holds 1/2: it could not tell, which does not say that nobody can
    (where the face judge tells them apart, the line says so)."""
    score = results.get("c2st_acc")
    if score is None or score.interval is None or not score.interval[0] <= 0.5 <= score.interval[1]:
        return None
    face = results.get("face_auc")
    if face is not None and face.interval is not None and face.interval[0] > 0.5:
        return ("c2st_acc: the classifier could not tell the samples from the reference; the face judge, which knows "
                "faces, did (face_auc); frame-blind puts a person in its place (docs/evaluation.md)")
    return ("c2st_acc: the classifier could not tell the samples from the reference; a person may still tell them apart "
            "(what only knowledge of the object shows): frame-blind puts a person in its place (docs/evaluation.md)")


def default_out(args: argparse.Namespace) -> Path:
    first = args.ckpt if args.ckpt is not None else args.samples[0]
    if first.is_dir():
        return first.parent / f"{first.resolve().name}_eval.json"
    return first.with_name(f"{first.stem}_eval.json")


def evaluate(args: argparse.Namespace) -> None:
    from frame.run.checkpoints import existing_file  # after parsing: start-up time (frame.cli)

    if args.steps is not None and args.ckpt is None:
        raise ValueError("--steps draws fresh samples from a checkpoint: give --ckpt")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.image_size is not None and not 8 <= args.image_size <= MAX_IMAGE_SIDE:
        raise ValueError(f"--image-size must be between 8 and {MAX_IMAGE_SIDE}, got {args.image_size}")
    out = args.out or default_out(args)
    reads = sample_reads(args)
    check_outputs(reads, files=[out])
    if args.ckpt is not None:
        existing_file(args.ckpt)
    source, size, where = reference_source(args)
    from frame.eval import NOT_FID, format_table  # after the checks of what the user gave: start-up time (frame.cli)
    from frame.eval.kind import choose_kind, make_evaluator

    began = time.perf_counter()
    samples, made = checkpoint_samples(args) if args.ckpt is not None else file_samples(args)
    reference = reference_images(source, size, samples)
    kind = choose_kind(args.kind, len(reference))
    more = ": draw more with --steps N --n 64" if args.ckpt is not None else ": give more files"
    features = {"source": args.vgg_source, "batch_size": args.batch_size or 50}
    evaluator = make_evaluator(reference, len(samples), kind, "--kind", features, args.device, more, n_crops=args.n_crops, seed=args.seed,
                               c2st=args.c2st, faces={"auto": "auto", "on": True, "off": False}[args.faces])
    results = evaluator(samples)
    seconds = time.perf_counter() - began

    print(format_table(results, evaluator.setup()))
    if note := chance_note(results):
        print(note)
    print(f"samples: {made}; reference: {len(reference)} images, {where}")
    report = {
        "note": NOT_FID,
        "kind": kind,
        "setup": evaluator.setup(),
        "samples": {"source": made, "count": len(samples), "size": list(samples.shape[-2:])},
        "reference": {"source": where, "count": len(reference), "size": list(reference.shape[-2:])},
        "vgg_source": args.vgg_source,
        "seed": args.seed,
        "seconds": round(seconds, 2),
        "metrics": as_json(results),
    }
    write_text(out, json.dumps(report, indent=2, allow_nan=False) + "\n", reads=[path for paths in reads.values() for path in paths])
    print(f"wrote {out} ({seconds:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
