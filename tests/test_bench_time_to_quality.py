"""bench/time_to_quality.py end to end (its ``main``, in this process): its quick paper race prints both runs and the ratio line."""

from __future__ import annotations

import pytest

from tests.bench_scripts import bench_module


@pytest.mark.slow
def test_the_quick_paper_race_prints_both_runs_and_the_ratio(capsys):
    bench_module("time_to_quality").main(["--quick", "--clock", "cpu"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| brick |")]
    assert [row.split("|")[2].strip() for row in rows] == ["ours", "paper fp32"], out
    assert "lr 0.0001" in rows[1] and "lr 0.0003" in rows[0]  # the paper's rate against ours
    assert out.strip().splitlines()[-1].startswith("ratio paper / ours"), out
