"""Wall time to fixed quality thresholds: our defaults against Algorithm 1 as the paper publishes it.

    python bench/time_to_quality.py                          # the paper race: main job, brick, fig6_textures
    python bench/time_to_quality.py --race same --jobs brick --max-minutes 3
    python bench/time_to_quality.py --quick                  # a few tiny iterations of each race: does it run

Two races, each job run by two implementations until the statistics gap (``train/gap_rel``) and
the job's eval metric (``frame.eval``: objects, KID of the chains against the training images;
textures, the relative Gram distance) are both at or below the job's thresholds, or until the
job's time cap (``--max-minutes`` for all):

- ``--race paper`` (default): ours with the job's defaults against the paper's published setting,
  written out as plain fp32 Algorithm 1 (below) with the authors' hyper-parameters. Objects
  (the main job's data): the paper's Section 6, Experiment 1: "We use n~ = 16 parallel chains",
  "The number of Langevin iterations between every two consecutive updates of the parameters is
  L = 100", "filters from the 3rd convolutional layer of VGG" (conv3_3), with the authors' step
  of 0.3 and rate 1e-4 decayed to 1e-5 that ``conf/experiment/fig5_objects.yaml`` holds (the
  paper's text gives no step size or rate for the VGG experiments). Textures (Experiment 2 gives
  none of them): the job's layers, chains and L, with the authors' step 0.3 and constant plain-SGD
  rate 1e-4 of ``conf/experiment/fig6_textures.yaml``.
- ``--race same``: ours against the plain loop with the same config and hyper-parameters (the
  implementation's share of the gain alone).

Ours: ``FrameModel`` under a Lightning ``Trainer``, as ``train.py`` runs it (the network in bf16
where the device runs bf16 fast, else fp32: ``model.sampler.precision=auto``; channels-last chains,
observed statistics cached, the chain buffer). Plain: Algorithm 1 written out in fp32: the observed
statistics recomputed every iteration, the chains a plain tensor started at the mean image, L steps
of eq. (16), then ``w <- w + gamma (H_obs - H_syn)`` (eq. 13/14) by the config's optimizer, with
the per-layer or per-weight gamma when its ``model.precondition`` sets one. gap_rel is each run's
own (over its energy's layers: conv3_3 alone for the paper's objects); the eval metric is one
judge for both. The metric is checked every ``--check-every`` iterations with the clock stopped; ``--clock cpu``
counts the process' CPU time instead of wall time (a machine shared with other jobs).
The table gives the minutes to each threshold and to both; the last line is the ratio of the
other run to ours (a lower bound, ">", when the other did not get there in its cap).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from frame.eval import Evaluator  # noqa: E402
from frame.models.statistics import statistics_gap  # noqa: E402
from frame.progress import progress_bar  # noqa: E402
from frame.run import build_model, prepare_data  # noqa: E402
from frame.run.precondition import PRECONDITION_IMAGES, PRECONDITIONS  # noqa: E402

#: what the race's minutes count: wall time, or this process's CPU time (all its threads), which a
#: machine shared with other jobs slows far less (one thread per run: about an idle machine's wall time)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def clock() -> float:
    return _clock[0]()


@dataclass
class Job:
    overrides: list[str]
    kind: str  # objects | texture
    gap: float  # train/gap_rel threshold
    metric: str
    threshold: float  # absolute, or times the real-vs-real floor when `of_floor`
    of_floor: bool = False
    paper: list[str] = field(default_factory=list)  # the paper's setting on top of `overrides`
    cap: float = 30.0  # default minutes of training per run
    paper_gap: float | None = None  # the paper race's gap threshold (default: `gap`)


#: the authors' texture setting (conf/experiment/fig6_textures.yaml): steps of 0.3, constant SGD rate 1e-4
PAPER_TEXTURE = ["model.sampler.step_size=0.3", "model.optimizer.lr=1.0e-4", "model.scheduler=null"]
#: the paper's objects (Section 6, Experiment 1): 16 chains, L = 100, conv3 filters; fig5_objects' step and rate
PAPER_OBJECTS = ["experiment=fig5_objects", "data.image_size=64", "model.energy.extractor.layers=[conv3_3]",
                 "model.sampler.n_steps=100", "model.buffer.n_chains=16"]
FIG6 = Job(["experiment=fig6_textures"], "texture", gap=0.02, metric="gram_rel", threshold=2.0, of_floor=True,
           paper=PAPER_TEXTURE, cap=8.0, paper_gap=0.25)
JOBS = {
    "main": Job(["model=nonstationary", "data=objects"], "objects", gap=0.12, metric="kid", threshold=0.25,
                paper=PAPER_OBJECTS, cap=12.0, paper_gap=0.2),
    "brick": Job(["model=stationary", "data=texture"], "texture", gap=0.02, metric="gram_rel", threshold=2.0, of_floor=True,
                 paper=PAPER_TEXTURE, cap=3.0),
    "brick224": FIG6,
    "fig6_textures": FIG6,
}
#: --quick: a few tiny iterations on random weights (the mechanism, not a result)
QUICK = ["vgg_source=random", "data.image_size=32", "model.sampler.n_steps=2", "model.buffer.n_chains=4"]
#: --quick: the judge on random weights too, with few texture crops
QUICK_JUDGE = {"source": "random", "n_crops": 8}


@dataclass
class Race:
    """When one implementation first met each threshold (training minutes, clock stopped for checks)."""

    gap_at: float | None = None
    metric_at: float | None = None
    both_at: float | None = None
    iterations: int = 0
    minutes: float = 0.0
    best_gap: float = math.inf
    best_metric: float = math.inf
    history: list[tuple[int, float, float, float]] = field(default_factory=list)

    def check(self, iteration: int, minutes: float, gap: float, metric: float | None, job: Job, threshold: float) -> bool:
        self.iterations, self.minutes = iteration, minutes
        self.best_gap = min(self.best_gap, gap)
        if self.gap_at is None and gap <= job.gap:
            self.gap_at = minutes
        if metric is not None:
            self.best_metric = min(self.best_metric, metric)
            self.history.append((iteration, minutes, gap, metric))
            if self.metric_at is None and metric <= threshold:
                self.metric_at = minutes
            if self.both_at is None and gap <= job.gap and metric <= threshold:
                self.both_at = minutes
        return self.both_at is not None


class Judge:
    """The eval metric of a job on a batch of chains, against the training images.

    Chains smaller than the images (a run on the faces at their own 25 px, judged beside one at
    64 px) are upsampled to them bilinearly, as the data pipeline and the filters see them.
    """

    def __init__(self, job: Job, images: torch.Tensor, n_chains: int, **options) -> None:
        self.job, self.size = job, tuple(images.shape[-2:])
        n = min(n_chains, len(images) // 2) if job.kind == "objects" else None
        self.evaluator = Evaluator(images, job.kind, n=n, **options)
        self.threshold = job.threshold

    def calibrate(self, like: torch.Tensor) -> None:
        floor, _ = self.evaluator.calibration(like)
        if self.job.of_floor:
            self.threshold = self.job.threshold * floor[self.job.metric]

    def __call__(self, images: torch.Tensor) -> float:
        if self.job.kind == "objects" and tuple(images.shape[-2:]) != self.size:
            images = torch.nn.functional.interpolate(images.float(), size=self.size, mode="bilinear", align_corners=False)
        return self.evaluator.raw(images)[self.job.metric]


def compose_job(job: Job, extra: list[str]) -> object:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[*job.overrides, *extra])


class Stopwatch(pl.Callback):
    """Checks the thresholds every `every` iterations (clock stopped) and stops when both are met."""

    def __init__(self, race: Race, judge: Judge, every: int, max_minutes: float) -> None:
        self.race, self.judge, self.every, self.max_minutes = race, judge, every, max_minutes
        self.spent = 0.0
        self.start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        paused = clock()
        minutes = (paused - self.start - self.spent) / 60
        iteration = trainer.global_step
        gap = float(trainer.callback_metrics["train/gap_rel"])
        metric = None
        if iteration % self.every == 0 or minutes >= self.max_minutes:
            metric = self.judge(pl_module.to_images(pl_module.buffer.chains))
        if self.race.check(iteration, minutes, gap, metric, self.judge.job, self.judge.threshold) or minutes >= self.max_minutes:
            trainer.should_stop = True
        self.spent += clock() - paused


def run_ours(cfg, judge: Judge, every: int, max_minutes: float) -> Race:
    race = Race()
    data = prepare_data(cfg)
    model = build_model(cfg.model)
    trainer = pl.Trainer(
        max_steps=10**6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0,
        callbacks=[Stopwatch(race, judge, every, max_minutes)],
    )
    trainer.fit(model, datamodule=data)
    return race


def run_plain(cfg, judge: Judge, every: int, max_minutes: float) -> Race:
    """Algorithm 1 in fp32, every quantity recomputed, nothing cached."""
    race = Race()
    data = prepare_data(cfg)
    data.setup("fit")
    images = data.observed_images()
    energy = instantiate(cfg.model.energy)
    if hasattr(energy.input_space, "channels_last"):
        energy.input_space.channels_last = False  # NCHW, as the obvious loop runs (grey chains too)
    energy.input_space.fit(images)
    observed = energy.input_space.to_input(images)
    energy.fit(observed)
    sampler = cfg.model.sampler
    delta, sigma, n_steps = float(sampler.step_size), float(sampler.sigma), int(sampler.n_steps)
    canvas = int(cfg.model.canvas_size or cfg.model.image_size)
    chains = torch.zeros(int(cfg.model.buffer.n_chains), energy.input_space.channels, canvas, canvas)  # the mean image
    optimizer = instantiate(cfg.model.optimizer)(energy.parameters())
    method = PRECONDITIONS[cfg.model.get("precondition", "none")]  # the same per-layer rates (Section 5.1)
    with torch.no_grad():
        factors = getattr(energy, method)(energy.features(observed[:PRECONDITION_IMAGES])) if method else {}
    scheduler = instantiate(cfg.model.scheduler)(optimizer) if cfg.model.get("scheduler") else None
    spent, start, iteration = 0.0, clock(), 0
    while True:
        feats_obs = energy.features(observed)  # recomputed every iteration
        x = chains
        for _ in range(n_steps):  # eq. (16)
            x = x.detach().requires_grad_(True)
            (grad_f,) = torch.autograd.grad(energy(x).sum(), x)
            x = x + 0.5 * delta**2 * (grad_f - x / sigma**2) + delta * torch.randn_like(x)
        chains = x.detach()
        feats_syn = energy.features(chains)
        gap = float(statistics_gap(energy, feats_obs, feats_syn)["train/gap_rel"])
        optimizer.zero_grad()
        energy.contrastive_loss(feats_obs, feats_syn).backward()  # w <- w + gamma (H_obs - H_syn)
        for layer, factor in factors.items():
            energy.weights[layer].grad.mul_(factor)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        iteration += 1
        paused = clock()
        minutes = (paused - start - spent) / 60
        metric = None
        if iteration % every == 0 or minutes >= max_minutes:
            with torch.no_grad():
                metric = judge(energy.input_space.to_images(chains).clamp(0, 1))
        done = race.check(iteration, minutes, gap, metric, judge.job, judge.threshold)
        spent += clock() - paused
        if done or minutes >= max_minutes:
            return race


def fmt(value: float | None, limit: float) -> str:
    return f"{value:.2f}" if value is not None else f"> {limit:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--race", choices=("paper", "same"), default="paper",
                        help="paper: ours against the paper's published setting; same: against a plain loop with our hyper-parameters")
    parser.add_argument("--jobs", default=None, help="comma-separated, from: " + ", ".join(JOBS) +
                        " (default: main,brick,fig6_textures; --race same: main,brick,brick224)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training minutes per run (default: each job's cap)")
    parser.add_argument("--check-every", type=int, default=5, help="iterations between metric checks")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="minutes of wall time, or of the process' CPU time")
    parser.add_argument("--gap", type=float, default=None, help="gap_rel threshold for every job (default: the job's)")
    parser.add_argument("--metric", type=float, default=None,
                        help="metric threshold for every job: KID, or times the floor for Gram (default: the job's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="brick, tiny and on random weights, a few iterations: does it run")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = "brick" if args.quick else "main,brick,fig6_textures" if args.race == "paper" else "main,brick,brick224"
    unknown = [name for name in args.jobs.split(",") if name not in JOBS]
    if unknown:
        parser.error(f"--jobs: unknown {', '.join(unknown)} (from: {', '.join(JOBS)})")
    if args.quick:
        args.max_minutes, args.check_every, args.overrides = 0.004, 1, [*args.overrides, *QUICK]
    return args


def race_job(name: str, args: argparse.Namespace) -> list[tuple]:
    """Both runs of one job: rows (job, implementation, race, load, metric threshold, job)."""
    job = JOBS[name]
    gap = args.gap if args.gap is not None else job.paper_gap if args.race == "paper" and job.paper_gap is not None else job.gap
    job = Job(job.overrides, job.kind, gap, job.metric, args.metric if args.metric is not None else job.threshold,
              job.of_floor, job.paper, job.cap)
    cap = args.max_minutes if args.max_minutes is not None else job.cap
    cfg = compose_job(job, args.overrides)
    other_cfg = compose_job(job, [*job.paper, *args.overrides]) if args.race == "paper" else cfg
    # one judge for both runs, at the larger of their image sizes
    judged = max((cfg, other_cfg), key=lambda c: int(c.data.image_size))
    data = prepare_data(judged)
    data.setup("fit")
    images = data.observed_images()
    n_chains = min(int(cfg.model.buffer.n_chains), int(other_cfg.model.buffer.n_chains))
    judge = Judge(job, images, n_chains, **(QUICK_JUDGE if args.quick else {}))
    canvas = int(judged.model.canvas_size or judged.model.image_size)
    judge.calibrate(torch.rand(max(n_chains, 2), 3, canvas, canvas))
    rows = []
    other = "paper fp32" if args.race == "paper" else "plain fp32"
    for impl, run, run_cfg in (("ours", run_ours, cfg), (other, run_plain, other_cfg)):
        torch.manual_seed(args.seed)
        load = os.getloadavg()[0]
        race = run(run_cfg, judge, args.check_every, cap)
        rows.append((name, impl, race, f"{load:.1f}-{os.getloadavg()[0]:.1f}", judge.threshold, job, setting(run_cfg)))
        print(f"{name} {impl}: {race.iterations} its, {race.minutes:.2f} min, best gap {race.best_gap:.3f}, "
              f"best {job.metric} {race.best_metric:.4g}, history {[(i, round(g, 3), round(m, 4)) for i, _, g, m in race.history]}",
              flush=True)
    return rows


def setting(cfg) -> str:
    """The hyper-parameters a run differs by: chains x L steps of delta, rate, layers."""
    model = cfg.model
    layers = "+".join(model.energy.extractor.layers) if "extractor" in model.energy else "-"
    decay = ", decayed" if model.get("scheduler") else ""
    return (f"{model.buffer.n_chains} x {model.sampler.n_steps} steps of {model.sampler.step_size}, lr {model.optimizer.lr:g}{decay}, "
            f"{layers}, {cfg.data.image_size} px")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _clock[0] = CLOCKS[args.clock]
    rows = []
    for name in progress_bar(args.jobs.split(","), "jobs", unit="job"):
        rows.extend(race_job(name, args))
    print(f"\nthreads {torch.get_num_threads()}; {args.clock} minutes of training (metric checks excluded); '>' = not reached in the cap")
    print("| job | run | setting | gap thr. | metric thr. | its | min to gap | min to metric | min to both | best gap | best metric | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, impl, race, load, threshold, job, how in rows:
        print(f"| {name} | {impl} | {how} | {job.gap} | {job.metric} <= {threshold:.4g} | {race.iterations} | "
              f"{fmt(race.gap_at, race.minutes)} | {fmt(race.metric_at, race.minutes)} | {fmt(race.both_at, race.minutes)} | "
              f"{race.best_gap:.3f} | {race.best_metric:.4g} | {load} |")
    ratios = []
    for name in dict.fromkeys(r[0] for r in rows):
        ours = next(r[2] for r in rows if r[0] == name and r[1] == "ours")
        other = next(r[2] for r in rows if r[0] == name and r[1] != "ours")
        if ours.both_at is None:
            ratios.append(f"{name}: ours did not reach the thresholds")
        elif other.both_at is None:
            ratios.append(f"{name}: > {other.minutes / max(ours.both_at, 1e-9):.1f}x")
        else:
            ratios.append(f"{name}: {other.both_at / max(ours.both_at, 1e-9):.1f}x")
    print(f"ratio {'paper' if args.race == 'paper' else 'plain'} / ours (minutes to both thresholds): " + "; ".join(ratios))


if __name__ == "__main__":
    main()
