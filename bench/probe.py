"""One short training probe, judged by what the model does not optimise: one row per run.

    python bench/probe.py --name base --steps 30 -- model=nonstationary data=objects
    python bench/probe.py --name conv12 --steps 30 -- model=nonstationary data=objects \
        'model.energy.extractor.layers=[conv1_2,conv3_3]'

Trains with the given overrides for ``--steps`` iterations (CSV logger, no W&B), then scores
the chains with ``frame.eval`` against the training images (objects: KID and coverage; textures:
Gram and sliced Wasserstein distances, relative) and prints, and appends to
``outputs/probes/probes.tsv``: the setting, wall minutes and load average, gap_rel at the end
and its minimum, the chains' contrast (mean per-image pixel std over the training images'),
their colour (mean |R - G| + |G - B| in grey levels) and the eval metrics with their floors.
VGG-16 feature distances, not Inception FID: not comparable with published FIDs.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from frame.eval import evaluate  # noqa: E402
from frame.overrides import path_override  # noqa: E402
from frame.run import prepare_data, train  # noqa: E402
from frame.run.checkpoints import load_model  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def contrast(images: torch.Tensor) -> float:
    return float(images.mean(1).flatten(1).std(1).mean())


def colour(images: torch.Tensor) -> float:
    return float(((images[:, 0] - images[:, 1]).abs() + (images[:, 1] - images[:, 2]).abs()).mean() * 255)


def load_reference(folder: str, size: int) -> torch.Tensor:
    """The images of `folder`, grey as the chains, resized and centre-cropped to `size` px."""
    from frame.data import list_images, load_images, to_tensor

    return to_tensor(load_images(list_images(folder)), size, grayscale=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="outputs/probes")
    parser.add_argument("--extra", nargs="*", default=[], help="more frame.eval metrics as columns, e.g. distinct precision")
    parser.add_argument("--reference", help="score against this image folder (e.g. held-out faces) instead of the training images")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run = Path(args.out) / args.name
    overrides = [*args.overrides, "logger=csv", path_override("paths.output_dir", run), f"trainer.max_steps={args.steps}",
                 "callbacks.eval_metrics=null", f"callbacks.model_checkpoint.every_n_train_steps={args.steps}",
                 f"callbacks.sample_grid.every_n_steps={args.steps}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    start_load, start = load(), time.time()
    train(cfg)
    minutes = (time.time() - start) / 60
    with open(run / "csv" / "metrics.csv") as handle:
        gaps = [float(row["train/gap_rel"]) for row in csv.DictReader(handle) if row.get("train/gap_rel")]
    model = load_model(run / "checkpoints" / "last.ckpt")
    samples = model.to_images(model.buffer.chains)
    data = prepare_data(cfg)
    data.setup("fit")
    reference = load_reference(args.reference, samples.shape[-1]) if args.reference else data.observed_images()
    kind = "texture" if reference.shape[0] < 12 or samples.shape[0] < 6 else "objects"
    scores = evaluate(samples, reference, kind=kind)
    metrics = (*(("kid", "coverage", "recall") if kind == "objects" else ("gram_rel", "swd_rel")), *args.extra)
    row = {
        "name": args.name, "steps": args.steps, "minutes": f"{minutes:.1f}", "load": f"{start_load}-{load()}",
        "gap_end": f"{gaps[-1]:.3f}", "gap_min": f"{min(gaps):.3f}",
        "contrast": f"{contrast(samples) / contrast(reference):.2f}", "colour": f"{colour(samples):.1f}",
        **{m: f"{scores[m].value:.4g} (floor {scores[m].floor:.3g}, ceiling {scores[m].ceiling:.3g})" for m in metrics},
        "overrides": " ".join(args.overrides),
    }
    print(f"threads={torch.get_num_threads()}\t" + "\t".join(f"{k}={v}" for k, v in row.items()))
    table = Path(args.out) / "probes.tsv"
    new = not table.exists()
    with open(table, "a") as handle:
        if new:
            handle.write("\t".join(row) + "\n")
        handle.write("\t".join(str(v) for v in row.values()) + "\n")


if __name__ == "__main__":
    main()
