"""Seconds per learning iteration of every `experiment=` preset, and its full run's wall time.

    python bench/preset_times.py [--steps 4] [--data ../shared/data] [--only main,fig6_textures,...]

"main" is the main job (the defaults: ``model=nonstationary data=objects``).

Each preset runs `--steps` iterations (the first is not timed: it builds the chains and warms
the allocator) under a plain Lightning Trainer without loggers or callbacks; the full run's
estimate is its ``trainer.max_steps`` times the median seconds per iteration. Presets that
need research data get it from ``--data`` (the project's benchmark checkout); without it they
are skipped with a line saying so. Prints a markdown table with the load average.
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

from frame.training import build_model, prepare_data  # noqa: E402

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
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.start)


def time_preset(name: str, steps: int, data_dir: Path | None) -> tuple[float, int, str] | str:
    overrides = [] if name == "main" else [f"experiment={name}"]  # main: the defaults (the main job)
    if name in NEEDS_DATA:
        if data_dir is None:
            return "needs --data"
        path = data_dir / NEEDS_DATA[name]
        files = sorted(str(p) for p in path.iterdir()) if path.is_dir() and name == "fig7_hybrid_objects" else None
        overrides.append(f"data.root=[{','.join(files)}]" if files else f"data.root={path}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    data = prepare_data(cfg)  # resolves data.grayscale=auto, which the model needs
    model, timer = build_model(cfg.model), StepTimer()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, inference_mode=False, callbacks=[timer],
    )
    trainer.fit(model, datamodule=data)
    per_step = statistics.median(timer.times[1:])
    size = f"{cfg.data.image_size} px, {cfg.model.buffer.n_chains} chains, L = {cfg.model.sampler.n_steps}"
    return per_step, int(cfg.trainer.max_steps), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="iterations per preset (the first is not timed)")
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder, e.g. ../shared/data")
    parser.add_argument("--only", default=None, help="comma-separated preset names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else ["main", *sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))]
    print(f"threads {torch.get_num_threads()}")
    print("| preset | setting | s / iteration | iterations | full run (min) | load |")
    print("|---|---|---|---|---|---|")
    for name in names:
        load = os.getloadavg()[0]
        result = time_preset(name, args.steps, args.data)
        if isinstance(result, str):
            print(f"| {name} | {result} | | | | |", flush=True)
            continue
        per_step, max_steps, size = result
        print(f"| {name} | {size} | {per_step:.2f} | {max_steps} | {per_step * max_steps / 60:.1f} | "
              f"{load:.1f}-{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
