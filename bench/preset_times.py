"""Seconds per learning iteration of every `experiment=` preset, and its full run's wall time.

    python bench/preset_times.py [--steps 4] [--data ../shared/data] [--only main,fig6_textures,...]
    python bench/preset_times.py --full --only frame_gray_textures,linear_objects   # to the end

"main" is the main job (the defaults: ``model=nonstationary data=objects``).

Each preset runs `--steps` iterations (the first is not timed: it builds the chains and warms
the allocator) under a plain Lightning Trainer without loggers or callbacks; the full run's
estimate is its ``trainer.max_steps`` times the median seconds per iteration. Presets that
need research data get it from ``--data`` (the project's benchmark checkout); without it they
are skipped with a line saying so. Prints a markdown table with the load average.

With ``--full`` each preset runs its whole ``trainer.max_steps`` and the table adds gap_rel at the
end, its minimum and their ratio: a preset runs to its end without slow divergence when the end
is within 1.5x of the minimum (the bar in bench/README, "Presets"). Both are running means over ``--window`` iterations, so
that a minibatch preset's iteration-to-iteration noise does not pass for a climb.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from frame.overrides import path_override  # noqa: E402
from frame.progress import progress_bar  # noqa: E402
from frame.run import build_model, prepare_data  # noqa: E402

#: the research data a preset needs (relative to --data), as in its header's usage line
NEEDS_DATA = {
    "fig5_objects": "objects/egret",
    "fig7_hybrid_objects": "objects/lion_tiger",
    "frame_gray_textures": "textures/frame_gray/grass_obs.bmp",
    "gconvnet_egret": "objects/egret",
    "gconvnet_hummingbird": "objects/hummingbird",
    "gconvnet_scenery": "natural/309004.jpg",
    "scratch_faces": "faces",
}


class StepTimer(pl.Callback):
    """Seconds of every training iteration, and its train/gap_rel."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.gaps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.start)
        gap = trainer.callback_metrics.get("train/gap_rel")
        if gap is not None:
            self.gaps.append(float(gap))


def time_preset(name: str, steps: int | None, data_dir: Path | None) -> tuple[float, int, str, list[float]] | str:
    """Runs `steps` iterations of a preset (None: its trainer.max_steps)."""
    overrides = [] if name == "main" else [f"experiment={name}"]  # main: the defaults (the main job)
    if name in NEEDS_DATA:
        if data_dir is None:
            return "needs --data"
        path = data_dir / NEEDS_DATA[name]
        files = sorted(path.iterdir()) if path.is_dir() and name == "fig7_hybrid_objects" else None
        overrides.append(path_override("data.root", files or path))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    data = prepare_data(cfg)  # resolves data.grayscale=auto, which the model needs
    model, timer = build_model(cfg.model), StepTimer()
    trainer = pl.Trainer(
        max_steps=int(cfg.trainer.max_steps) if steps is None else steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, inference_mode=False, callbacks=[timer],
    )
    trainer.fit(model, datamodule=data)
    per_step = statistics.median(timer.times[1:])
    size = f"{cfg.data.image_size} px, {cfg.model.buffer.n_chains} chains, L = {cfg.model.sampler.n_steps}"
    return per_step, int(cfg.trainer.max_steps), size, timer.gaps


def running_mean(values: list[float], window: int) -> list[float]:
    """Means of every `window` consecutive values (the whole list if shorter)."""
    window = max(1, min(window, len(values)))
    return [statistics.fmean(values[i : i + window]) for i in range(len(values) - window + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="iterations per preset (the first is not timed)")
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder, e.g. ../shared/data")
    parser.add_argument("--only", default=None, help="comma-separated preset names")
    parser.add_argument("--full", action="store_true", help="run every preset to its trainer.max_steps")
    parser.add_argument("--window", type=int, default=10, help="iterations of the running mean of gap_rel (--full)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else ["main", *sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))]
    print(f"threads {torch.get_num_threads()}")
    extra = f" gap end ({args.window}-it mean) | gap min (same) | end / min |" if args.full else ""
    print(f"| preset | setting | s / iteration | iterations | full run (min) |{extra} load |")
    print("|---|---|---|---|---|---|" + "---|" * (3 if args.full else 0))
    for name in progress_bar(names, "presets", unit="preset"):
        load = os.getloadavg()[0]
        result = time_preset(name, None if args.full else args.steps, args.data)
        if isinstance(result, str):
            print(f"| {name} | {result} | | | | |", flush=True)
            continue
        per_step, max_steps, size, gaps = result
        gap = ""
        if args.full:
            smooth = running_mean(gaps, args.window)
            low = min(smooth)
            verdict = "ok" if smooth[-1] <= 1.5 * low else "CLIMBS"
            gap = f" {smooth[-1]:.3f} | {low:.3f} | {smooth[-1] / low:.2f} {verdict} |"
        print(f"| {name} | {size} | {per_step:.2f} | {max_steps} | {per_step * max_steps / 60:.1f} |{gap} "
              f"{load:.1f}-{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
