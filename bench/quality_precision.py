"""Does a precision learn as well as fp32? The same two short runs in fp32 and in bf16.

    python bench/quality_precision.py                      # both runs, fp32 and bf16
    python bench/quality_precision.py --runs texture --texture-iters 60
    python bench/quality_precision.py --precisions fp32 bf16 --faces-iters 30 --faces-steps 15

Drives the real training path (``frame.run.fit.train`` on configs composed from ``conf/``,
``logger=csv``, ``callbacks=none``, fixed ``seed``), changing only
``model.sampler.precision``:

* ``texture``: ``model=stationary data=texture`` -- brick at 64 px, conv1_2 + conv2_2 + conv3_3,
  one chain, lr 3e-4, 10 Langevin steps per iteration, ``--texture-iters`` iterations;
* ``faces``: ``model=nonstationary data=objects`` -- the 100 aligned LFW faces at 64 px, conv3_3,
  16 chains, lr 4e-5, ``--faces-steps`` Langevin steps per iteration, ``--faces-iters``
  iterations.

For each run and precision it prints the final ``train/gap_rel`` (= ||H_obs - H_syn|| /
||H_obs||, the last logged value), the mean over the last 5 iterations (less noisy), the gap at
the first iteration and the wall time; then, per run, the ratio of each precision's final gap
(and last-5 mean) to fp32's, flagged when it is more than ``--tolerance`` (10%) worse. The last
line is a one-line verdict.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from frame.overrides import path_override  # noqa: E402
from frame.progress import progress_bar, say  # noqa: E402
from frame.run import train  # noqa: E402

CONF_DIR = str(ROOT / "conf")


def run_overrides(run: str, args: argparse.Namespace) -> list[str]:
    if run == "texture":
        iters = args.texture_iters
        return ["model=stationary", "data=texture", "data.image_size=64", "model.energy.extractor.layers=[conv1_2,conv2_2,conv3_3]",
                "model.optimizer.lr=3e-4", "model.sampler.n_steps=10", "model.buffer.n_chains=1",
                f"trainer.max_steps={iters}", f"data.steps_per_epoch={iters}"]
    iters = args.faces_iters
    return ["model=nonstationary", "data=objects", "data.image_size=64", "model.energy.extractor.layers=[conv3_3]",
            "model.optimizer.lr=4e-5", f"model.sampler.n_steps={args.faces_steps}", "model.buffer.n_chains=16",
            f"trainer.max_steps={iters}", f"data.steps_per_epoch={iters}"]


def read_gaps(out_dir: Path) -> list[float]:
    with open(out_dir / "csv" / "metrics.csv") as handle:
        return [float(row["train/gap_rel"]) for row in csv.DictReader(handle) if row.get("train/gap_rel")]


def one_run(run: str, precision: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"quality_{run}_{precision}_") as tmp:
        overrides = [
            *run_overrides(run, args), f"model.sampler.precision={precision}", f"seed={args.seed}",
            "logger=csv", "callbacks=none", path_override("paths.output_dir", tmp), "trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false", "+trainer.enable_checkpointing=false",
        ]
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        t0 = time.perf_counter()
        metrics = train(cfg)
        seconds = time.perf_counter() - t0
        gaps = read_gaps(Path(tmp))
    last5 = gaps[-5:]
    return {"final": metrics["train/gap_rel"], "last5": sum(last5) / len(last5), "first": gaps[0],
            "iters": len(gaps), "seconds": seconds}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["texture", "faces"], choices=["texture", "faces"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--texture-iters", type=int, default=80)
    p.add_argument("--faces-iters", type=int, default=35)
    p.add_argument("--faces-steps", type=int, default=20, help="Langevin steps per face iteration (config: 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=0.10, help="allowed relative excess of the final gap over fp32's")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "frame"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    precisions = ["fp32"] + [p for p in args.precisions if p != "fp32"]
    results: dict[tuple[str, str], dict[str, float]] = {}
    for run, precision in progress_bar([(r, p) for r in args.runs for p in precisions], "runs", unit="run"):
        results[run, precision] = one_run(run, precision, args)
        r = results[run, precision]
        say(f"[done] {run} {precision}: final gap {r['final']:.4f} in {r['seconds']:.0f} s")

    print(f"\n{'run':<8} {'precision':<9} {'iters':>5} {'gap@1':>7} {'final gap':>9} {'last-5 gap':>10} "
          f"{'final/fp32':>10} {'last5/fp32':>10} {'wall s':>7}")
    verdicts = []
    for run in args.runs:
        ref = results[run, "fp32"]
        for precision in precisions:
            r = results[run, precision]
            ratio, ratio5 = r["final"] / ref["final"], r["last5"] / ref["last5"]
            ok = ratio <= 1 + args.tolerance
            flag = "" if ok or precision == "fp32" else "  WORSE"
            print(f"{run:<8} {precision:<9} {r['iters']:>5} {r['first']:>7.4f} {r['final']:>9.4f} {r['last5']:>10.4f} "
                  f"{ratio:>10.3f} {ratio5:>10.3f} {r['seconds']:>7.0f}{flag}")
            if precision != "fp32":
                verdicts.append(f"{run} {precision}/fp32 final {ratio:.3f} (last-5 {ratio5:.3f}) {'ok' if ok else 'WORSE'}")
    print("SUMMARY " + ("; ".join(verdicts) or "fp32 only") + f" (tolerance +{100 * args.tolerance:.0f}%)")


if __name__ == "__main__":
    main()
