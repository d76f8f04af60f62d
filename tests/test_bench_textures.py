"""bench/textures.py end to end (its ``main``, in this process; ``--quick``: brick at 32 px, tiny budgets, random VGG weights)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.bench_scripts import bench_module

METHODS = ("exemplar crops", "deep FRAME", "Julesz, VGG", "Julesz, linear", "Portilla-Simoncelli")


@pytest.mark.slow  # a few seconds of CPU, the import of plenoptic among them
def test_quick_run_prints_the_table_and_writes_the_grid(tmp_path, monkeypatch, capsys):
    grid = tmp_path / "grid.png"
    monkeypatch.chdir(tmp_path)
    status = bench_module("textures").main(["--quick", "--vgg-source", "random", "--out", str(tmp_path), "--grid", str(grid),
                                            "--data-root", str(tmp_path / "absent"),
                                            "--threads", str(torch.get_num_threads())])  # this process keeps its threads
    out = capsys.readouterr().out
    assert status == 0, out[-2000:]
    table = [line for line in out.splitlines() if line.startswith("| brick |")]
    assert [line.split(" | ")[1] for line in table[-len(METHODS):]] == list(METHODS)
    assert "| texture | method | output | wall s (CPU s) | C2ST acc | PS | Gram | SWD | seam |" in out
    assert "brick: cpu_s " in out  # the winners' line
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == list(METHODS)
    assert all(0 <= r["c2st_acc"] <= 1 and r["seam"] > 0 for r in rows)
    with Image.open(grid) as image:
        image.load()
        # five 32 px cells and their 2 px gaps, a label column on the left and a label row on top
        assert image.mode == "L"  # brick is grey: the grid is too
        assert image.height == 12 + 32 + 2 * 2 and image.width > 5 * (32 + 2)
    assert grid.stat().st_size <= 1_000_000
