"""Table 1 of the paper for our run: f(I; w) of a from-scratch face model on faces vs natural images.

    python bench/score_faces_vs_natural.py                       # train (reduced) then score
    python bench/score_faces_vs_natural.py --ckpt <run>/checkpoints/last.ckpt   # score only

Trains ``experiment=scratch_faces`` on the aligned faces (Extended Yale B, ../shared/data/faces)
of all subjects but the held-out ones (``--holdout``), then prints the mean and std of f(I; w) on
up to ``--n`` training faces, the held-out subjects' faces and each set of natural images
(``--natural``, default: ../shared/data/natural_imagenet, 334 ImageNet photos, the paper's source,
then ../shared/data/natural, BSDS500), and the ROC AUC of f(I; w) as a face detector (faces
positive, natural images negative), on training and on held-out faces against each set; then the same for
log p(I; w) + log Z = f(I; w) + log q(I), the score to read when q(I) is centred on the mean
face (``model.energy.reference_mean=data``, see ``frame.scoring``). Last, the same AUCs for log q(I)
alone (what the learned weights add to the reference) and for two
scores that know nothing of faces (the darkness, minus the mean grey level, and ||I - grey||^2,
i.e. -log q(I) of the grey reference): the Yale B faces are darker and lit harder than the
natural images, so an AUC of f means something only above theirs.
The training faces are given to the data module as a folder of symbolic links in the run
directory, never copied.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frame.data.images import list_images  # noqa: E402
from frame.overrides import path_override  # noqa: E402
from frame.progress import progress_bar  # noqa: E402
from frame.run import train  # noqa: E402
from frame.run.checkpoints import load_model  # noqa: E402
from frame.scoring import SCORES, format_table, load_folder, log_reference, roc_auc, score_images, summary, write_csv  # noqa: E402
from frame.synthesis import canvas_side  # noqa: E402


def _grey(images: torch.Tensor) -> torch.Tensor:
    return images.double().mean(1).flatten(1) * 255


#: face-blind scores of an image batch [N, 3, H, W] in [0, 1] (grey levels 0-255)
IMAGE_STATISTICS = {
    "darkness": lambda images: -_grey(images).mean(1),
    "||I - grey||^2": lambda images: ((_grey(images) - 114.8) ** 2).sum(1),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="score this checkpoint instead of training one")
    parser.add_argument("--faces", default=str(ROOT.parent / "shared/data/faces"))
    parser.add_argument("--natural", nargs="+", default=[str(ROOT.parent / "shared/data/natural_imagenet"), str(ROOT.parent / "shared/data/natural")],
                        help="folders of natural images, each scored as a set (default: the ImageNet photos, then BSDS500)")
    parser.add_argument("--holdout", default="yaleB35,yaleB36,yaleB37,yaleB38,yaleB39",
                        help="comma-separated file-name prefixes of held-out subjects (not trained on)")
    parser.add_argument("--n", type=int, default=1000, help="faces trained on and scored (the paper: 1,000)")
    parser.add_argument("--out", default=str(ROOT / "outputs/bench/score_faces_vs_natural"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for training, e.g. trainer.max_steps=60")
    return parser.parse_args(argv)


def split_faces(folder: str, holdout: list[str], n: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(up to n random training faces, held-out subjects' faces), by file-name prefix."""
    paths = list_images(folder)
    held = [p for p in paths if any(p.name.startswith(h) for h in holdout)]
    rest = [p for p in paths if not any(p.name.startswith(h) for h in holdout)]
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(rest[i] for i in order[:n]), held


def link_folder(paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder


def print_aucs(metrics: dict[str, float], key: str, label: str, values: dict[str, torch.Tensor], naturals: list[str]) -> None:
    """ROC AUC of a score (`values` per set) for training and held-out faces against each natural set: printed, and
    stored in `metrics` as "auc <key> <faces> vs <natural>"."""
    for natural in naturals:
        for name in ("faces (train)", "faces (held-out)"):
            if name in values:
                metrics[f"auc {key} {name} vs {natural}"] = auc = roc_auc(values[name], values[natural])
                print(f"ROC AUC of {label}, {name} vs {natural}: {auc:.4f}")


def main(argv=None) -> dict[str, float]:
    args = parse_args(argv)
    out = Path(args.out)
    train_faces, held_faces = split_faces(args.faces, [h for h in args.holdout.split(",") if h], args.n, args.seed)
    train_dir = link_folder(train_faces, out / "train_faces")
    held_dir = link_folder(held_faces, out / "heldout_faces") if held_faces else None
    ckpt = args.ckpt
    if ckpt is None:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[
                "experiment=scratch_faces", path_override("data.root", train_dir), "logger=csv",
                path_override("paths.output_dir", out / "run"), f"seed={args.seed}", *args.overrides,
            ])
        start = time.time()
        train(cfg)
        print(f"trained in {time.time() - start:.0f} s: {out / 'run'}")
        ckpt = out / "run" / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    size, grey = canvas_side(model), model.buffer.chains.shape[1] == 1
    images = {}
    naturals = [Path(folder).name for folder in args.natural]  # each set of natural images by its folder name
    if len(set(naturals)) != len(naturals):
        raise SystemExit(f"score_faces_vs_natural: error: --natural folders need distinct names, got {args.natural}")
    sets = [("faces (train)", train_dir), ("faces (held-out)", held_dir), *zip(naturals, args.natural)]
    for name, folder in progress_bar(sets, "reading", unit="set"):
        if folder is not None:
            images[name] = load_folder(folder, size, grey)
    metrics = {}
    for score in SCORES:  # Table 1 as the paper (f), then the log-likelihood up to log Z
        results = {name: (paths, score_images(model, batch, score=score)) for name, (paths, batch) in images.items()}
        write_csv(results, out / f"scores_{score}.csv", score)
        print(format_table(results, score))
        print_aucs(metrics, score, SCORES[score], {name: scores for name, (_, scores) in results.items()}, naturals)
        for name, (_, scores) in results.items():
            metrics[f"mean {score} {name}"], metrics[f"std {score} {name}"] = summary(scores)
    statistics = {  # what the reference q alone and two face-blind scores reach on these sets
        "log q(I) (the reference alone, no learned weights)": lambda images: log_reference(model, model.to_input(images)),
        **{f"{label} (no model)": statistic for label, statistic in IMAGE_STATISTICS.items()},
    }
    for label, statistic in statistics.items():
        with torch.no_grad():
            values = {name: statistic(batch) for name, (_, batch) in images.items()}
        print_aucs(metrics, label, label, values, naturals)
    print(f"scores: {out / 'scores_f.csv'}, {out / 'scores_log_p.csv'}")
    return metrics


if __name__ == "__main__":
    main()
