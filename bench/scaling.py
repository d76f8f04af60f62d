"""Cost as the work grows: seconds per iteration, peak memory and FLOPs against canvas, chains, taps, processes.

    python bench/scaling.py                 # the four axes (~15 min on 2 CPU cores)
    python bench/scaling.py --axes canvas --check-limit
    python bench/scaling.py --quick         # two tiny canvases on random weights: does it run (seconds)

One point = one learning iteration of Algorithm 1 as ``train.py`` runs it (``FrameModel`` under a
Lightning ``Trainer``): observed statistics (cached), L Langevin steps of eq. (16) on the chains,
their statistics, and the weight update of eq. (13)/(14). Every point is a stationary model
(eq. 10, ``model=stationary data=texture``: brick, 64 px training image) with ``--steps`` Langevin
steps per iteration (2: enough for per-step figures; an iteration of the presets' L costs
``update + L x step``). Axes, each from the same base point:

* ``canvas``: the chains' side (``model.canvas_size``) 64 .. 1024, one chain, conv1_2 + conv2_2 + conv3_3;
* ``chains``: 1 .. 64 chains (``model.buffer.n_chains``) at 64 px;
* ``taps``: 1 .. 5 VGG-16 layers (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3: the first k) at 128 px;
* ``processes``: ``trainer=ddp_sim`` (DDP, gloo) with 1 and 2 processes, 4 chains at 128 px; the
  processes share the ``--threads`` of the other axes times 2 (2 cores: 2 threads in one process, 1 in each of two).

Each point runs in a child process forked for it (the parent only composes configs), so its
peak memory is its own: the resident-set high-water (``VmHWM``, reset at the child's start; with
DDP plus each worker's, ``RUSAGE_CHILDREN`` times the processes, an upper bound). ``work MB`` is that
peak minus the resident set before ``fit`` (imports, weights, data): what the iteration adds.
Times: the median of ``--iterations`` training steps after one warm-up step (``on_train_batch_start``
to ``on_train_batch_end``: forward, Langevin, backward and the optimizer step; start-up not counted);
``step s`` is the sampler's share divided by L. FLOPs: ``torch.utils.flop_counter.FlopCounterMode``
over one more step (convolutions and matmuls, forward and backward; elementwise work not counted),
from which the time of one iteration on one H100 is estimated on paper: FLOPs / (peak x ``--utilisation``),
with the dense peaks of its data sheet (bf16 989 TFLOP/s, fp32 67 TFLOP/s, no sparsity) and an
assumed utilisation (40% by default: an assumption, not a measurement).

Per axis, the exponent of a log-log least-squares fit of s/it, of FLOPs and of the working memory
against the axis' value (memory over the points that add at least 1/8 of the largest one's: below
that the allocator's noise rules). From the canvas fit of memory, the largest canvas whose peak
(resident set before fit + fitted working memory) stays within ``--memory-gib`` (24 GiB):
``--check-limit`` then runs one iteration (L = 1) at the largest multiple of 256 below it, or
``--check-side`` at a side of your choice, and prints its peak beside the fit's. The 1-minute load average is printed beside each point.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402 - no torch op runs in the parent: the forked children may use threads

TAPS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
#: one H100 SXM, dense (data sheet): bf16 tensor cores and fp32 (non-tensor) peaks, FLOP/s
H100_PEAK = {"bf16": 989e12, "fp32": 67e12}
AXES = "canvas,chains,taps,processes"


@dataclass
class Point:
    axis: str
    value: int
    overrides: list[str]
    threads: int = 1
    processes: int = 1
    steps: int = 2  # Langevin steps per iteration
    iterations: int = 2  # timed iterations (after one warm-up)
    count_flops: bool = True


@dataclass
class Result:
    point: Point
    s_per_it: float = math.nan
    s_per_step: float = math.nan
    peak_mb: float = math.nan
    work_mb: float = math.nan
    flops: float = math.nan
    load: str = ""
    error: str = ""
    extra: dict = field(default_factory=dict)


def status_kib(key: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def loadavg() -> float:
    return os.getloadavg()[0]


def axes(quick: bool, steps: int, iterations: int, threads: int) -> dict[str, list[Point]]:
    """The points of every axis; `quick`: tiny canvases on random weights."""
    common = ["model=stationary", "data=texture", "data.image_size=24" if quick else "data.image_size=64",
              "logger=none", "callbacks=none", f"model.sampler.n_steps={steps}"]
    if quick:
        common.append("vgg_source=random")
    base_taps = "model.energy.extractor.layers=[" + ",".join(TAPS[:2 if quick else 3]) + "]"

    def point(axis: str, value: int, *overrides: str, processes: int = 1) -> Point:
        shared = threads if axis != "processes" else max(1, 2 * threads // processes)  # the processes share 2x the threads
        return Point(axis, value, [*common, *overrides], threads=shared, processes=processes, steps=steps, iterations=iterations)

    canvases = (24, 32) if quick else (64, 128, 256, 512, 1024)
    chains = (1, 2) if quick else (1, 4, 16, 64)
    taps = (1, 2) if quick else (1, 2, 3, 4, 5)
    side = 24 if quick else 128
    small = 24 if quick else 64
    return {
        "canvas": [point("canvas", c, f"model.canvas_size={c}", "model.buffer.n_chains=1", base_taps) for c in canvases],
        "chains": [point("chains", n, f"model.canvas_size={small}", f"model.buffer.n_chains={n}", base_taps) for n in chains],
        "taps": [point("taps", k, f"model.canvas_size={side}", "model.buffer.n_chains=1",
                       "model.energy.extractor.layers=[" + ",".join(TAPS[:k]) + "]") for k in taps],
        "processes": [] if quick else [
            point("processes", p, "model.canvas_size=128", "model.buffer.n_chains=4", base_taps, "trainer=ddp_sim",
                  f"trainer.devices={p}", processes=p) for p in (1, 2)],
    }


# -- in the child process ----------------------------------------------------------------------
class GlobalOnly:
    """A module tracker that tracks nothing: ``FlopCounterMode``'s own hooks every module's backward,
    which ``autograd.grad`` on the chains (the Langevin gradient of eq. 16) refuses; totals only."""

    parents = frozenset({"Global"})

    def __enter__(self) -> GlobalOnly:
        return self

    def __exit__(self, *exc) -> None:
        return None


class StepTimer(pl.Callback):
    """Times each training step and the sampler within it; counts the FLOPs of the step after the
    timed ones; rank 0 writes them to `out` (a DDP worker's callback does not come back)."""

    def __init__(self, point: Point, out: Path) -> None:
        self.point, self.out = point, out
        self.steps: list[float] = []
        self.sampling: list[float] = []
        self.counter = None
        self.flops = math.nan
        self.in_sampler = 0.0
        self.start = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        synthesize = pl_module.sampler.synthesize

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return synthesize(*args, **kwargs)
            finally:
                self.in_sampler += time.perf_counter() - start

        pl_module.sampler.synthesize = timed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.point.count_flops and trainer.global_step == self.point.iterations + 1:
            from torch.utils.flop_counter import FlopCounterMode

            self.counter = FlopCounterMode(display=False)
            self.counter.mod_tracker = GlobalOnly()
            self.counter.__enter__()
        self.in_sampler = 0.0
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        elapsed = time.perf_counter() - self.start
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.flops = float(self.counter.get_total_flops())
            self.counter = None
        elif trainer.global_step > 1:  # global_step counts this step already: the first is the warm-up
            self.steps.append(elapsed)
            self.sampling.append(self.in_sampler)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            self.out.write_text(json.dumps({"steps": self.steps, "sampling": self.sampling, "flops": self.flops}))


def measure(point: Point, queue) -> None:
    """Runs `point` in this (forked) process and puts its figures on `queue`."""
    import torch

    result = {"load0": loadavg()}
    try:
        torch.set_num_threads(point.threads)
        os.environ["OMP_NUM_THREADS"] = str(point.threads)  # spawned DDP workers read it
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here
        from hydra import compose, initialize_config_dir

        from frame.run.build import build_model, instantiate, prepare_data

        with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[*point.overrides, f"paths.output_dir={tmp}"])
            data = prepare_data(cfg)
            model = build_model(cfg.model)
            before = status_kib("VmRSS")
            out = Path(tmp) / "timer.json"
            steps = 1 + point.iterations + (1 if point.count_flops else 0)
            trainer = instantiate(cfg.trainer, max_steps=steps, logger=False, callbacks=[StepTimer(point, out)],
                                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                  num_sanity_val_steps=0)
            trainer.fit(model, datamodule=data)
            timed = json.loads(out.read_text())
        peak = status_kib("VmHWM")
        if point.processes > 1 or "trainer=ddp_sim" in point.overrides:
            peak += point.processes * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        result.update(timed, peak_kib=peak, before_kib=before, load1=loadavg())
    except Exception as err:  # noqa: BLE001 - a point that fails (memory) is a row, not the end of the table
        result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
    queue.put(result)


def run_point(point: Point) -> Result:
    """`point` in a forked child; its figures, or the error that stopped it."""
    context = mp.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=measure, args=(point, queue))
    child.start()
    try:
        raw = queue.get()
    except KeyboardInterrupt:
        child.terminate()
        raise
    child.join()
    result = Result(point, load=f"{raw['load0']:.1f}-{raw.get('load1', loadavg()):.1f}", error=raw.get("error", ""))
    if child.exitcode not in (0, None) and not result.error:
        result.error = f"child exit {child.exitcode}"
    if not result.error:
        if not raw["steps"]:
            result.error = "no timed step"
        else:
            result.s_per_it = statistics.median(raw["steps"])
            result.s_per_step = statistics.median(raw["sampling"]) / point.steps
        result.peak_mb = raw["peak_kib"] / 1024
        result.work_mb = (raw["peak_kib"] - raw["before_kib"]) / 1024
        result.flops = raw["flops"]
    return result


# -- fits and the table ------------------------------------------------------------------------
def loglog_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Exponent p and log-coefficient a of y = exp(a) x^p, by least squares on logs (NaN: too few points)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0 and math.isfinite(y)]
    if len(pairs) < 2:
        return math.nan, math.nan
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    if sxx == 0:
        return math.nan, math.nan
    slope = sum((p[0] - mx) * (p[1] - my) for p in pairs) / sxx
    return slope, my - slope * mx


def h100_ms(flops: float, precision: str, utilisation: float) -> float:
    return 1e3 * flops / (H100_PEAK[precision] * utilisation)


def print_table(results: list[Result], utilisation: float) -> None:
    print(f"\n| axis | value | s / it (L={results[0].point.steps}) | s / Langevin step | peak MB | work MB | GFLOP / it | "
          f"H100 ms / it bf16 | H100 ms / it fp32 | threads | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.error:
            print(f"| {r.point.axis} | {r.point.value} | failed: {r.error} | | | | | | | {r.point.threads} | {r.load} |")
            continue
        gflop = f"{r.flops / 1e9:.1f}" if math.isfinite(r.flops) else "-"
        bf16 = f"{h100_ms(r.flops, 'bf16', utilisation):.3f}" if math.isfinite(r.flops) else "-"
        fp32 = f"{h100_ms(r.flops, 'fp32', utilisation):.2f}" if math.isfinite(r.flops) else "-"
        print(f"| {r.point.axis} | {r.point.value} | {r.s_per_it:.3f} | {r.s_per_step:.3f} | {r.peak_mb:.0f} | {r.work_mb:.0f} | "
              f"{gflop} | {bf16} | {fp32} | {r.point.threads} | {r.load} |")


def fits(results: list[Result]) -> dict[str, dict[str, float]]:
    """Per axis: exponents of s/it, working memory and FLOPs, and the memory fit's log-coefficient."""
    out = {}
    for axis in dict.fromkeys(r.point.axis for r in results):
        rows = [r for r in results if r.point.axis == axis and not r.error]
        xs = [float(r.point.value) for r in rows]
        time_p, _ = loglog_fit(xs, [r.s_per_it for r in rows])
        # memory: the points where the iteration adds at least 1/8 of the largest one's (below, allocator noise rules)
        large = [r for r in rows if r.work_mb >= max(r.work_mb for r in rows) / 8]
        mem_p, mem_a = loglog_fit([float(r.point.value) for r in large], [r.work_mb for r in large])
        flop_p, _ = loglog_fit(xs, [r.flops for r in rows])
        base = statistics.median([r.peak_mb - r.work_mb for r in rows]) if rows else math.nan
        out[axis] = {"time": time_p, "memory": mem_p, "flops": flop_p, "mem_log_coef": mem_a, "base_mb": base}
    return out


def predicted_peak_mb(fit: dict[str, float], side: float) -> float:
    """The canvas fit's peak at `side`: the resident set before fit plus the fitted working memory."""
    return fit["base_mb"] + math.exp(fit["mem_log_coef"]) * side ** fit["memory"]


def memory_limit(fit: dict[str, float], memory_gib: float) -> float:
    """The canvas side whose fitted peak (base + working memory) reaches `memory_gib`."""
    budget = memory_gib * 1024 - fit["base_mb"]
    if not (math.isfinite(fit["memory"]) and fit["memory"] > 0 and budget > 0):
        return math.nan
    try:
        return math.exp((math.log(budget) - fit["mem_log_coef"]) / fit["memory"])
    except OverflowError:  # a flat memory fit (tiny points): no limit in sight
        return math.inf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--axes", default=AXES, help="comma-separated: canvas, chains, taps, processes")
    parser.add_argument("--steps", type=int, default=2, help="Langevin steps per iteration")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per point (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per point (the processes axis: 2x shared)")
    parser.add_argument("--utilisation", type=float, default=0.4, help="assumed fraction of the H100 peak reached")
    parser.add_argument("--memory-gib", type=float, default=24.0, help="memory of the machine for the canvas limit")
    parser.add_argument("--check-limit", action="store_true", help="run one iteration (L = 1) at the largest multiple of 256 below the limit")
    parser.add_argument("--check-side", type=int, default=None, help="... or at this canvas side (a machine shared with other jobs)")
    parser.add_argument("--quick", action="store_true", help="tiny points on random weights (a test)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.iterations < 1 or args.threads < 1 or not 0 < args.utilisation <= 1:
        parser.error("--steps, --iterations and --threads must be >= 1, --utilisation in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:  # two tiny canvases: the mechanism in a few seconds
        args.iterations = 1
        if args.axes == AXES:
            args.axes = "canvas"
    points = axes(args.quick, args.steps, args.iterations, args.threads)
    chosen = [a.strip() for a in args.axes.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in points]
    if unknown:
        print(f"--axes: unknown {', '.join(unknown)} (from: {', '.join(points)})", file=sys.stderr)
        return 2
    print(f"stationary FRAME (brick), L = {args.steps} Langevin steps per iteration, median of {args.iterations} "
          f"timed iterations; {'quick: random weights' if args.quick else 'Caffe VGG-16'}; load {loadavg():.1f}", flush=True)
    results = []
    for axis in chosen:
        for point in points[axis]:
            result = run_point(point)
            results.append(result)
            print(f"{axis}={point.value}: {result.s_per_it:.3f} s/it, {result.peak_mb:.0f} MB peak, "
                  f"{result.flops / 1e9:.2f} GFLOP {result.error} (load {result.load})", flush=True)
    print_table(results, args.utilisation)
    fitted = fits(results)
    print("\nexponents (log-log least squares, y ~ x^p):")
    for axis, fit in fitted.items():
        print(f"  {axis}: time {fit['time']:.2f}, working memory {fit['memory']:.2f}, FLOPs {fit['flops']:.2f}")
    print(f"H100 estimate: FLOPs / ({H100_PEAK['bf16'] / 1e12:.0f} TFLOP/s bf16 or {H100_PEAK['fp32'] / 1e12:.0f} fp32 dense peak "
          f"x {args.utilisation:.0%} assumed utilisation)")
    if "canvas" in fitted:
        limit = memory_limit(fitted["canvas"], args.memory_gib)
        print(f"largest canvas within {args.memory_gib:g} GiB (one chain, L = {args.steps}, memory fit): {limit:.0f} px")
        if args.check_side or (args.check_limit and math.isfinite(limit) and limit >= 256):
            side = args.check_side or int(limit // 256) * 256
            canvas = points["canvas"][-1]
            check = Point("canvas", side, [o for o in canvas.overrides if not o.startswith("model.canvas_size=")] + [f"model.canvas_size={side}"],
                          threads=canvas.threads, steps=1, iterations=1, count_flops=False)
            started = time.perf_counter()
            result = run_point(check)
            print(f"check at {side} px (L = 1): " + (f"failed: {result.error}" if result.error else
                  f"ran, {result.s_per_it:.1f} s/it, peak {result.peak_mb / 1024:.2f} GiB (fit: "
                  f"{predicted_peak_mb(fitted['canvas'], side) / 1024:.2f}), {time.perf_counter() - started:.0f} s in all") +
                  f" (load {result.load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
