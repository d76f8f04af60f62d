"""Table 2 of the paper on faces split by subject: our conditional Langevin recovery vs baselines.

    python bench/recovery.py                                   # train (short) + evaluate
    python bench/recovery.py --ckpt outputs/.../last.ckpt      # evaluate a trained model
    python bench/recovery.py --train-steps 300 --n-test 200 --n-chains 4

Data: ``--data`` (default ``../shared/data/faces``, Extended Yale B, ``yaleBxx_*.pgm``) split
by subject: the first ``--train-subjects`` subjects (sorted) train, the others test; or give
``--train-data`` and ``--test-data`` folders. Images are grey, resized and centre-cropped to
``--image-size`` (the paper's 64).

Training (unless ``--ckpt``): ``train.py``'s config with ``model=<--model>``, one random
``--train-mask``-pixel square per training image (``model.recovery``, Section 9), batches of
``--batch-size`` images (= the number of chains), ``--train-steps`` iterations; extra Hydra
overrides with ``--override key=value``.

Evaluation: ``--n-test`` test images drawn with ``--seed``; for each mask size (40 and 50 at
64 px, scaled to ``--image-size``) one random square per image, drawn with a fixed seed, the
same for every method. ``--draw validation`` evaluates instead ``--n-test`` other faces of the test
subjects, none of them in the test draw, with other holes: choose settings there (test steps,
say), then report the test draw. Error: mean |recovered - original| on the masked pixels, grey in [0, 1]
(``frame.recovery.masked_mae``), +- its standard error over images; time: wall seconds per
image on this machine. Prints the table, writes ``results.json`` and ``examples.png`` (rows:
original, masked, ours, harmonic, biharmonic) to ``--out``. Besides the classical fills a
data-driven row, ``exemplars`` (``--exemplars k``): the mean of the k training faces nearest to
the test face on its observed pixels, shifted to the hole's ring (``frame.recovery.exemplar_fill``).
A model trained with ``model.recovery.start: exemplars`` (``experiment=vgg_recovery_exemplars``), or
``--start exemplars``, starts our chains from that fill (k = 8) over the same training faces.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frame.data import list_images, load_images, to_tensor  # noqa: E402
from frame.overrides import path_override  # noqa: E402
from frame.progress import progress_bar  # noqa: E402
from frame.recovery import BASELINES, LABELS, available_baselines, exemplar_fill, masked_mae  # noqa: E402
from frame.recovery.inpaint import inpaint, recovery_start, recovery_step_size, recovery_steps  # noqa: E402
from frame.recovery.masks import STARTS, square_masks  # noqa: E402
from frame.run.checkpoints import load_model  # noqa: E402

#: the paper's Table 2 (CelebA 64x64, 1,000 test images), for reference
PAPER = {
    "MRF-l2": (0.1519, 0.1847), "MRF-l1": (0.1507, 0.1841), "best interpolation (Nan4)": (0.1366, 0.1671),
    "Ours (paper)": (0.1338, 0.1465),
}
SUBJECT = re.compile(r"^(yaleB\d+)_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces"))
    p.add_argument("--train-data", help="training folder (instead of splitting --data by subject)")
    p.add_argument("--test-data", help="test folder (with --train-data)")
    p.add_argument("--train-subjects", type=int, default=28, help="subjects used for training; the rest test")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--ckpt", help="evaluate this checkpoint instead of training")
    p.add_argument("--model", default=None, help="model config name (default: scratch if present, else nonstationary)")
    p.add_argument("--experiment", help="train with this preset (e.g. scratch_recovery: its model, masks, batch and "
                   "iterations unless given here) instead of --model and the options below")
    p.add_argument("--override", action="append", default=[], help="extra Hydra override for training (repeatable)")
    p.add_argument("--train-steps", type=int, default=None, help="learning iterations (default 100, or the preset's)")
    p.add_argument("--n-train", type=int, default=None, help="use at most this many training images (random)")
    p.add_argument("--batch-size", type=int, default=None, help="training images per iteration (= chains; default 16, or the preset's)")
    p.add_argument("--train-mask", type=int, default=40, help="training mask side at 64 px (0: no recovery training)")
    p.add_argument("--n-test", type=int, default=50, help="test images (random, fixed seed)")
    p.add_argument("--mask-sizes", type=int, nargs="+", default=[40, 50], help="test mask sides at 64 px")
    p.add_argument("--steps", type=int, default=None, help="Langevin steps at test (default: the model's recovery.test_steps, else its L)")
    p.add_argument("--step-size", type=float, default=None,
                   help="Langevin step size at test (default: the model's recovery.test_step_size, else its sampler's)")
    p.add_argument("--n-chains", type=int, default=1, help="chains per test image, averaged")
    p.add_argument("--no-noise", action="store_true", help="test chains without noise (descend to the mode)")
    p.add_argument("--start", choices=STARTS, default=None,
                   help="hole start in training (model.recovery.start) and test (default: the model's, else mean); "
                        "exemplars takes the nearest training faces")
    p.add_argument("--baselines", nargs="+", default=None, help=f"subset of {list(BASELINES)}")
    p.add_argument("--exemplars", type=int, default=8,
                   help="k of the data-driven row: the mean of the k training faces nearest on the observed pixels (0: off)")
    p.add_argument("--eval-batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", choices=["test", "validation"], default="test",
                   help="which faces of the test subjects to evaluate: the test draw, or as many others (disjoint) "
                        "to choose settings on")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "recovery"))
    return p.parse_args(argv)


# -- data ----------------------------------------------------------------------------------------
def split_by_subject(folder: Path, n_train_subjects: int) -> tuple[list[Path], list[Path], list[str], list[str]]:
    paths = list_images(folder)
    subjects = {}
    for path in paths:
        match = SUBJECT.match(path.name)
        if match is None:
            raise SystemExit(f"{path.name} is not named yaleBxx_...: give --train-data and --test-data folders")
        subjects.setdefault(match.group(1), []).append(path)
    names = sorted(subjects)
    if not 0 < n_train_subjects < len(names):
        raise SystemExit(f"--train-subjects must be between 1 and {len(names) - 1}")
    train_names, test_names = names[:n_train_subjects], names[n_train_subjects:]
    train = [p for n in train_names for p in subjects[n]]
    test = [p for n in test_names for p in subjects[n]]
    return train, test, train_names, test_names


def pick(paths: list[Path], n: int | None, seed: int) -> list[Path]:
    if n is None or n >= len(paths):
        return paths
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:n]
    return [paths[i] for i in sorted(order.tolist())]


#: seeds of the holes of each draw (offset by --seed and the mask size)
MASK_SEEDS = {"test": 10_000, "validation": 20_000}


def draw_faces(paths: list[Path], n: int, seed: int, draw: str) -> list[Path]:
    """The test draw (``n`` faces, drawn with ``seed + 1``), or for ``draw="validation"`` ``n``
    of the remaining faces (drawn with ``seed + 2``), so that no face is in both."""
    test = pick(paths, n, seed + 1)
    if draw == "test":
        return test
    chosen = set(test)
    rest = [p for p in paths if p not in chosen]
    if not rest:
        raise SystemExit(f"--draw validation: the test draw takes all {len(paths)} test faces; lower --n-test")
    return pick(rest, n, seed + 2)


# -- training ------------------------------------------------------------------------------------
def default_model() -> str:
    return "scratch" if (ROOT / "conf" / "model" / "scratch.yaml").is_file() else "nonstationary"


def train_model(args: argparse.Namespace, train_paths: list[Path], out: Path) -> Path:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from frame.run import train

    model = args.model or default_model()
    side = round(args.train_mask * args.image_size / 64)
    data = "faces" if (ROOT / "conf" / "data" / "faces.yaml").is_file() else "objects"
    steps = args.train_steps or (None if args.experiment else 100)
    batch = args.batch_size or (None if args.experiment else 16)
    overrides = [f"experiment={args.experiment}"] if args.experiment else [f"model={model}", f"data={data}"]
    overrides += [
        "logger=csv", path_override("paths.output_dir", out), f"trainer={'gpu' if args.device.startswith('cuda') else 'cpu'}",
        f"data.image_size={args.image_size}", "data.grayscale=true", "data.embedded=null", f"seed={args.seed}",
    ]
    if steps:
        overrides += [f"trainer.max_steps={steps}", f"data.steps_per_epoch={steps}"]
    if batch:
        overrides += [f"data.batch_size={batch}", f"model.buffer.n_chains={batch}"]
    if side > 0 and not args.experiment:
        overrides.append(f"++model.recovery={{mask_size: {side}, n_masks: 1, placement: random, start: {args.start or 'mean'}}}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides + list(args.override))
    steps = int(cfg.trainer.max_steps)
    cfg.data.steps_per_epoch = steps
    cfg.callbacks.model_checkpoint.every_n_train_steps = max(1, steps // 4)
    cfg.data.root = [str(p) for p in train_paths]
    masks = cfg.model.get("recovery")
    print(f"training {'experiment=' + args.experiment if args.experiment else 'model=' + model} on {len(train_paths)} images, "
          f"{steps} iterations, batch {cfg.data.batch_size}, training masks {dict(masks) if masks else None}"
          + (f", overrides {args.override}" if args.override else ""))
    print(OmegaConf.to_yaml(cfg.model))
    start = time.perf_counter()
    metrics = train(cfg)
    print(f"trained in {time.perf_counter() - start:.0f} s; final metrics {metrics}")
    return out / "checkpoints" / "last.ckpt"


# -- evaluation ----------------------------------------------------------------------------------
def run_ours(model, images, masks, args, bank=None) -> tuple[np.ndarray, float]:
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    outs = []
    start = time.perf_counter()
    for i in range(0, len(images), args.eval_batch):
        out = inpaint(
            model, images[i : i + args.eval_batch], masks[i : i + args.eval_batch], n_steps=args.steps,
            n_chains=args.n_chains, noise=False if args.no_noise else None, generator=generator, start=args.start,
            step_size=args.step_size, bank=bank,
        )
        outs.append(out.mean(1).cpu())  # grey data: the channel mean
    seconds = time.perf_counter() - start
    return torch.cat(outs).numpy(), seconds / len(images)


def run_baseline(method, grey: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = np.stack([method(image, mask) for image, mask in zip(grey, masks)])
    return out, (time.perf_counter() - start) / len(grey)


def per_image_errors(recovered: np.ndarray, grey: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return np.array([masked_mae(r, g, m) for r, g, m in zip(recovered, grey, masks)])


def save_examples(path: Path, grey, masks, rows: dict[str, np.ndarray], n: int = 8) -> None:
    from torchvision.utils import save_image

    n = min(n, len(grey))
    tiles = [grey[:n], np.where(masks[:n], 1.0, grey[:n])] + [r[:n] for r in rows.values()]
    stacked = torch.from_numpy(np.concatenate(tiles)).float()[:, None].clamp(0, 1)
    save_image(stacked, path, nrow=n, padding=2, pad_value=1.0)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.train_data or args.test_data:
        if not (args.train_data and args.test_data):
            raise SystemExit("give both --train-data and --test-data")
        train_paths, test_paths = list_images(args.train_data), list_images(args.test_data)
        split = {"train": args.train_data, "test": args.test_data}
    else:
        train_paths, test_paths, train_subjects, test_subjects = split_by_subject(Path(args.data), args.train_subjects)
        split = {"train_subjects": train_subjects, "test_subjects": test_subjects}
    train_paths = pick(train_paths, args.n_train, args.seed)
    test_paths = draw_faces(test_paths, args.n_test, args.seed, args.draw)

    ckpt = Path(args.ckpt) if args.ckpt else train_model(args, train_paths, out / "train")
    model = load_model(ckpt, device=args.device)
    if tuple(model.buffer.chains.shape[-2:]) != (args.image_size, args.image_size):
        raise SystemExit(f"{ckpt} models {tuple(model.buffer.chains.shape[-2:])} images; pass --image-size to match")
    images = to_tensor(load_images(test_paths), args.image_size, grayscale=True)
    grey = images[:, 0].numpy().astype(np.float64)
    names = args.baselines or available_baselines()
    unknown = set(names) - set(available_baselines())
    if unknown:
        raise SystemExit(f"baselines {sorted(unknown)} are unknown or need opencv-python-headless")

    methods = {name: BASELINES[name] for name in names}
    start = args.start or recovery_start(model)
    bank = None  # the training faces: the data-driven row's bank, and the exemplars start's
    if args.exemplars or start == "exemplars":
        bank = to_tensor(load_images(train_paths), args.image_size, grayscale=True)
    if args.exemplars:
        methods["exemplars"] = exemplar_fill(bank[:, 0].numpy(), args.exemplars)
    steps = args.steps if args.steps is not None else recovery_steps(model)
    step_size = args.step_size if args.step_size is not None else recovery_step_size(model)
    results: dict = {"settings": {**vars(args), "ckpt": str(ckpt), "split": split, "n_test": len(test_paths),
                                  "langevin_steps": steps, "langevin_step_size": step_size, "langevin_start": start,
                                  "model_config": model.model_config}, "methods": {}}
    for size64 in progress_bar(args.mask_sizes, "mask sizes", unit="size"):
        side = round(size64 * args.image_size / 64)
        masks_t = square_masks(len(images), (args.image_size,) * 2, side,
                               generator=torch.Generator().manual_seed(MASK_SEEDS[args.draw] + args.seed + size64))
        masks = masks_t[:, 0].numpy()
        rows = {}
        recovered, seconds = run_ours(model, images, masks_t, args, bank)
        rows["ours"] = recovered
        ours_errors = per_image_errors(recovered, grey, masks)
        results["methods"].setdefault("ours", {})[f"M{size64}"] = _summary(ours_errors, seconds)
        for name, method in methods.items():
            rows[name], t = run_baseline(method, grey, masks)
            errors = per_image_errors(rows[name], grey, masks)
            results["methods"].setdefault(name, {})[f"M{size64}"] = _summary(errors, t)
            results.setdefault("paired", {}).setdefault(name, {})[f"M{size64}"] = _paired(ours_errors, errors)
        print(f"M{size64} ({side}px masks): ours {results['methods']['ours'][f'M{size64}']['error']:.4f}")
        if size64 == args.mask_sizes[0]:
            save_examples(out / "examples.png", grey, masks, {k: rows[k] for k in ("ours", "harmonic", "biharmonic") if k in rows})
    print_table(results, args)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out / 'results.json'} and {out / 'examples.png'}")
    return results


def _sem(values: np.ndarray) -> float:
    """Standard error of the mean of per-image values (0 for a single image)."""
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def _summary(errors: np.ndarray, seconds: float) -> dict:
    return {"error": float(errors.mean()), "sem": _sem(errors), "seconds_per_image": seconds}


def _paired(ours: np.ndarray, other: np.ndarray) -> dict:
    """Ours minus another method on the same faces and holes: the mean difference and its
    standard error (the per-method errors share most of their spread, which this removes)."""
    diff = ours - other
    return {"difference": float(diff.mean()), "sem": _sem(diff), "ours_better": float((diff < 0).mean())}


def print_table(results: dict, args: argparse.Namespace) -> None:
    sizes = [f"M{s}" for s in args.mask_sizes]
    s = results["settings"]
    print(f"\nTable 2 on {s['n_test']} faces of the {args.draw} draw ({args.image_size}x{args.image_size} grey), "
          f"{s['langevin_steps']} Langevin steps of {s['langevin_step_size']:g} from the {s['langevin_start']} fill "
          f"x {args.n_chains} chain(s){' without noise' if args.no_noise else ''}")
    header = "| method | " + " | ".join(f"{m} error" for m in sizes) + " | " + " | ".join(f"{m} s/img" for m in sizes) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(sizes)))
    order = sorted(results["methods"], key=lambda k: results["methods"][k][sizes[0]]["error"])
    for name in order:
        row = results["methods"][name]
        label = "Ours (FRAME, conditional Langevin)" if name == "ours" else LABELS[name]
        errs = " | ".join(f"{row[m]['error']:.4f} +- {row[m]['sem']:.4f}" for m in sizes)
        times = " | ".join(f"{row[m]['seconds_per_image']:.4f}" for m in sizes)
        print(f"| {label} | {errs} | {times} |")
    if results.get("paired"):
        print("\nours minus each method on the same faces (mean +- paired standard error; < 0: ours better; share of faces ours wins)")
        print("| method | " + " | ".join(sizes) + " |")
        print("|" + "---|" * (1 + len(sizes)))
        for name, row in results["paired"].items():
            cells = " | ".join(
                f"{row[m]['difference']:+.4f} +- {row[m]['sem']:.4f} ({row[m]['ours_better']:.0%})" for m in sizes)
            print(f"| {LABELS[name]} | {cells} |")
    print("\npaper (CelebA, 1,000 test images): " + ", ".join(f"{k} {v[0]:.4f}/{v[1]:.4f}" for k, v in PAPER.items()))


if __name__ == "__main__":
    main()
