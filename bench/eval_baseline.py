"""How good are a run's samples? frame.eval's metrics with their floors and ceilings, as one table.

    python bench/eval_baseline.py --ckpt outputs/train/runs/<run>/checkpoints/last.ckpt
    python bench/eval_baseline.py --ckpt <run>/checkpoints/last.ckpt --ceiling start --kind objects
    python bench/eval_baseline.py --samples my_samples/ --data ../shared/data/faces --image-size 64

Samples are never resized. ``--ckpt``: the samples are the checkpoint's chains (``model.to_images(model.buffer.chains)``)
and the reference is the run's own training images, rebuilt from ``<run>/.hydra/config.yaml``
(``--data`` replaces them). The kind is ``texture`` when the run used ``data=texture``, else
``objects`` (``--kind`` overrides). ``--samples``: a folder of images (or image files), each
one sample, against ``--data`` (a folder, files, or an embedded name such as ``lfw_faces``).

The ceiling is white noise, or with ``--ceiling start`` the model's x = 0 image (the mean
image, where chains start with the default ``buffer.init``). Prints the load average and the
evaluation's wall time. VGG-16 feature distances, not Inception FID: not comparable with
published FIDs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frame.data import ImageDataModule  # noqa: E402
from frame.data.images import EMBEDDED_IMAGES, list_images, load_readable, to_tensor  # noqa: E402
from frame.eval import Evaluator, VGGFeatures, format_table  # noqa: E402


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def data_images(data: str, image_size: int) -> torch.Tensor:
    """Training images from a folder, a file or an embedded name."""
    source = {"embedded": data} if data in EMBEDDED_IMAGES else {"root": data}
    datamodule = ImageDataModule(image_size=image_size, **source)
    datamodule.setup()
    return datamodule.observed_images()


def sample_images(paths: list[str]) -> torch.Tensor:
    """The sample files at their own size (that of the first; a texture canvas is never rescaled)."""
    files = list_images([Path(p) for p in paths])
    images = [image for _, image in load_readable(files, "fail")]
    width, height = images[0].size
    return to_tensor(images, (height, width))


def from_checkpoint(ckpt: Path, ceiling: str) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """(chains as images, the x = 0 image per chain or None, the run's config or {})."""
    from omegaconf import OmegaConf

    from frame.checkpoint import load_model

    model = load_model(ckpt)
    with torch.no_grad():
        chains = model.buffer.chains
        samples = model.to_images(chains).float()
        start = model.to_images(torch.zeros_like(chains)).float() if ceiling == "start" else None
    run = ckpt.resolve().parent.parent
    config = {}
    if (run / ".hydra" / "config.yaml").exists():
        config["config"] = OmegaConf.load(run / ".hydra" / "config.yaml")
    if (run / ".hydra" / "hydra.yaml").exists():
        config["choices"] = OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.runtime.choices
    return samples, start, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", type=Path, help="a run's checkpoint: its chains are the samples")
    what.add_argument("--samples", nargs="+", help="image files or folders, one sample each")
    parser.add_argument("--data", help="reference images: folder, file or embedded name (default: the run's data)")
    parser.add_argument("--image-size", type=int, help="side of the --data images (default: the samples' shorter side)")
    parser.add_argument("--kind", choices=("objects", "texture"), help="default: texture for data=texture runs, else objects")
    parser.add_argument("--ceiling", choices=("noise", "start"), default="noise")
    parser.add_argument("--source", default="caffe", help="VGG-16 weights (caffe; random for a dry run)")
    parser.add_argument("--n-crops", type=int, default=64, help="texture: crops per compared set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = None
    config: dict = {}
    if args.ckpt is not None:
        samples, start, config = from_checkpoint(args.ckpt, args.ceiling)
    else:
        if args.ceiling == "start":
            parser.error("--ceiling start needs --ckpt")
        samples = sample_images(args.samples)
    size = args.image_size or min(samples.shape[-2:])
    if args.data is not None:
        reference = data_images(args.data, size)
    elif "config" in config:
        import hydra

        datamodule = hydra.utils.instantiate(config["config"].data)
        datamodule.setup()
        reference = datamodule.observed_images()
    else:
        parser.error("give --data (no run config next to the samples)")
    kind = args.kind or ("texture" if config.get("choices", {}).get("data") == "texture" else "objects")

    print(f"load average {load_average()} at start; {len(samples)} samples {tuple(samples.shape[-2:])}, "
          f"{len(reference)} reference images {tuple(reference.shape[-2:])}, kind {kind}")
    began = time.perf_counter()
    features = VGGFeatures(source=args.source)
    options = {"n_crops": args.n_crops} if kind == "texture" else {"n": min(len(samples), len(reference) // 2)}
    evaluator = Evaluator(reference, kind, features=features, ceiling=start, seed=args.seed, **options)
    results = evaluator(samples)
    elapsed = time.perf_counter() - began
    print(format_table(results, evaluator.setup()))
    print(f"evaluated in {elapsed:.1f} s on {torch.get_num_threads()} threads; load average {load_average()} at the end")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(main())
