"""bench/time_to_quality.py runs end to end: its quick paper race prints both runs and the ratio line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_quick_paper_race_prints_both_runs_and_the_ratio():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "time_to_quality.py"), "--quick", "--clock", "cpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| brick |")]
    assert [row.split("|")[2].strip() for row in rows] == ["ours", "paper fp32"], done.stdout
    assert "lr 0.0001" in rows[1] and "lr 0.0003" in rows[0]  # the paper's rate against ours
    assert done.stdout.strip().splitlines()[-1].startswith("ratio paper / ours"), done.stdout
