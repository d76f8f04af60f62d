"""bench/scaling.py runs end to end: its quick points give a table and finite exponents."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_scaling_quick_prints_the_table_and_finite_exponents():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "scaling.py"), "--quick"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| canvas |")]
    assert len(rows) == 2 and "failed" not in "".join(rows), done.stdout
    gflops = [float(row.split("|")[7]) for row in rows]
    assert gflops[1] > gflops[0] > 0  # a larger canvas costs more FLOPs
    exponents = re.search(r"canvas: time (\S+), working memory (\S+), FLOPs (\S+)", done.stdout)
    assert exponents, done.stdout
    time_p, memory_p, flops_p = (float(v) for v in exponents.groups())
    assert all(math.isfinite(v) for v in (time_p, memory_p, flops_p))
    assert 1.9 < flops_p < 2.1  # the convolutions' FLOPs grow as the canvas' area
