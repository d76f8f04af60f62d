"""bench/textures.py end to end (``--quick``: brick at 32 px, tiny budgets, random VGG weights) in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("exemplar crops", "deep FRAME", "Julesz, VGG", "Julesz, linear", "Portilla-Simoncelli")


@pytest.mark.slow  # ~8 s of CPU, most of it the imports of torch, Lightning, Hydra and plenoptic in the subprocess
def test_quick_run_prints_the_table_and_writes_the_grid(tmp_path):
    grid = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "textures.py"), "--quick", "--vgg-source", "random", "--out", str(tmp_path),
         "--grid", str(grid), "--data-root", str(tmp_path / "absent")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| brick |")]
    assert [line.split(" | ")[1] for line in table[-len(METHODS):]] == list(METHODS)
    assert "| texture | method | output | wall s (CPU s) | C2ST acc | PS | Gram | SWD | seam |" in result.stdout
    assert "brick: cpu_s " in result.stdout  # the winners' line
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == list(METHODS)
    assert all(0 <= r["c2st_acc"] <= 1 and r["seam"] > 0 for r in rows)
    with Image.open(grid) as image:
        image.load()
        # five 32 px cells and their 2 px gaps, a label column on the left and a label row on top
        assert image.mode == "L"  # brick is grey: the grid is too
        assert image.height == 12 + 32 + 2 * 2 and image.width > 5 * (32 + 2)
    assert grid.stat().st_size <= 1_000_000
