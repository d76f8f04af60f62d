"""Seconds from a command line to the answer of ``--help``, for every ``frame-*`` command.

    python bench/startup.py [--repeat 5] [--threads 2]

Each console script runs ``--help`` in a fresh process ``--repeat`` times (after one untimed
run that warms the file cache); the table gives the median and the slowest wall time, and the
load average before and after, since a shared machine's load shows in every figure. The
commands parse before they import torch, Lightning or Hydra (``frame.cli``), so this is the
time of Python, argparse and ``frame.cli.common``. ``--import`` adds ``python -c "import X"``
rows for the heavy modules a command loads once it runs, for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frame.progress import progress_bar  # noqa: E402

COMMANDS = ("frame-sample", "frame-score", "frame-inpaint", "frame-eval", "frame-report", "frame-julesz", "frame-pursuit",
            "frame-fetch-weights", "frame-classify", "frame-blind", "frame-train")
HEAVY = ("torch", "pytorch_lightning", "frame.run.checkpoints")


def seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the children")
    parser.add_argument("--import", dest="imports", action="store_true", help="also time importing torch, Lightning, a model")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    scripts = Path(sys.executable).parent
    rows = [(name, [str(scripts / name) if (scripts / name).is_file() else shutil.which(name) or name, "--help"]) for name in COMMANDS]
    if args.imports:
        rows += [(f"import {module}", [sys.executable, "-c", f"import {module}"]) for module in HEAVY]
    before = load()
    table = []
    for name, command in progress_bar(rows, "commands", unit="command"):
        seconds(command, env)  # warm the file cache
        times = [seconds(command, env) for _ in range(args.repeat)]
        table.append((name, statistics.median(times), max(times)))
    print(f"load average before: {before}; after: {load()}; {os.cpu_count()} cores; OMP_NUM_THREADS={args.threads}\n")
    print("| command | median s | slowest s |")
    print("|---|---:|---:|")
    for name, median, slowest in table:
        print(f"| `{name}{' --help' if name.startswith('frame-') else ''}` | {median:.2f} | {slowest:.2f} |")


if __name__ == "__main__":
    main()
