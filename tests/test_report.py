"""frame-report on a 3-step run: one HTML file holding the config, the curves and the sample
grids as embedded PNGs, that loads nothing from anywhere.

The run (``train.py debug=fast``: random VGG-16, 32 px) keeps the eval callback on, with
random judge weights, so the page also draws eval/* curves from metrics.csv.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from frame.cli.report import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "disabled"}
# the default config's callbacks.eval_metrics (kind auto, ...), every step, judged by random weights
EVAL_EVERY_STEP = (
    "++callbacks.eval_metrics={_target_:frame.callbacks.EvalMetrics,every_n_steps:1,kind:auto,n_samples:64,"
    "max_reference:200,source:random,min_size:32}"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    done = subprocess.run(
        [sys.executable, "train.py", "debug=fast", "logger=csv", f"hydra.run.dir={out}", "model.buffer.n_chains=6",
         "model.energy.extractor.layers=[conv1_1]", EVAL_EVERY_STEP],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def embedded(page: str, figure_id: str) -> list[bytes]:
    """The PNG bytes of every <img> inside the element with ``figure_id``."""
    start = page.index(f'id="{figure_id}"')
    end = page.index("</figure>" if "over-time" not in figure_id else "</div>", start)
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page[start:end])]


def test_report_of_a_three_step_run(run):
    with open(run / "csv" / "metrics.csv") as handle:
        assert [row["step"] for row in csv.DictReader(handle) if row.get("eval/kid")] == ["0", "1", "2"]  # the callback logs
    done = subprocess.run([str(SCRIPTS / "frame-report"), str(run)], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()

    for figure in ("run0-gap", "run0-energy", "run0-eval"):  # curves drawn from metrics.csv
        (png,) = embedded(page, figure)
        assert Image.open(io.BytesIO(png)).size[0] > 300, figure
    grids = sorted((run / "samples").glob("step_*.png"))
    assert len(grids) == 3
    assert embedded(page, "run0-samples-over-time") == [path.read_bytes() for path in grids]  # the files themselves
    assert embedded(page, "run0-samples-final") == [grids[-1].read_bytes()]
    assert "vgg_source: random" in page and "model.energy.extractor.layers=[conv1_1]" in page  # config, overrides

    # opens offline: nothing to fetch
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<script|<link|<iframe|@import|url\(", page, re.I)


def test_one_page_compares_runs(run, tmp_path):
    other = tmp_path / "copy" / "run"
    shutil.copytree(run, other)
    out = tmp_path / "compare.html"
    assert main([str(run), str(other), "--out", str(out)]) == 0
    page = out.read_text()
    assert all(f'id="{key}"' in page for key in ("compare-gap", "compare-eval", "run0", "run1"))


def test_not_a_run_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a run folder" in err
