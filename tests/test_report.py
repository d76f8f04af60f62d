"""frame-report on a 3-step run: one HTML file holding the headline (last samples, quality
table), the curves, the sample grids and the folded config as embedded PNGs and text, that
loads nothing from anywhere: checked in the text and in headless Chromium.

The run (``small_run`` of conftest: ``train.py debug=fast``, random VGG-16, 32 px) keeps the
eval callback on, with random judge weights, so the page also draws eval/* curves and the
table from metrics.csv.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from frame.cli.report import main

#: with parallel workers (pytest-xdist), the tests of one trained run share a worker
pytestmark = pytest.mark.xdist_group("small_run")
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "disabled"}
@pytest.fixture(scope="module")
def run(small_run) -> Path:
    return small_run


def embedded(page: str, figure_id: str) -> list[bytes]:
    """The PNG bytes of every <img> inside the element with ``figure_id``."""
    start = page.index(f'id="{figure_id}"')
    end = page.index("</figure>" if "over-time" not in figure_id else "</div>", start)
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page[start:end])]


def test_report_of_a_three_step_run(run):
    with open(run / "csv" / "metrics.csv") as handle:
        assert [row["step"] for row in csv.DictReader(handle) if row.get("eval/kid")] == ["0", "1", "2"]  # the callback logs
    # -X importtime lists every module the command loads: the page needs no torch (frame.eval.names)
    done = subprocess.run([sys.executable, "-X", "importtime", str(SCRIPTS / "frame-report"), str(run)], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "frame.report" in loaded and "torch" not in loaded
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


def test_headline_first_config_folded_last(run, tmp_path):
    out = tmp_path / "report.html"
    assert main([str(run), "--out", str(out)]) == 0
    page = out.read_text()
    order = [page.index(f'id="{key}"') for key in ("run0-headline", "run0-samples-final", "run0-quality", "run0-gap",
                                                    "run0-samples-over-time", "run0-config")]
    assert order == sorted(order)
    assert re.search(r'<details><summary>\.hydra/config\.yaml</summary><pre id="run0-config">', page)  # folded
    with open(run / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("eval/kid")]
    table = page[page.index('id="run0-quality"') : page.index("</table>", page.index('id="run0-quality"'))]
    kid = re.search(r"<tr><td>kid</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", table)
    floor, ceiling = float(rows[-1]["eval/kid_floor"]), float(rows[-1]["eval/kid_ceiling"])
    assert kid and float(kid.group(2)) == pytest.approx(floor, rel=1e-3) and float(kid.group(3)) == pytest.approx(ceiling, rel=1e-3)
    assert "csv/metrics.csv, step 2" in table
    # an interval goes with its metric (the small run's data are faces, so the face judge ran)
    assert re.search(r"<tr><td>face_auc</td><td>[0-9.e-]+ \[[0-9.]+, [0-9.]+\]</td>", table), table
    assert "_low<" not in table and "_high<" not in table
    names = re.findall(r"<tr><td>([a-z0-9_]+)</td>", table)
    assert names.index("pixel_mean") < names.index("spectrum") < names.index("copies"), names  # frame-eval's order


def test_quality_table_prefers_frame_eval_json_and_shows_any_metric(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics = {"c2st_acc": {"value": 0.75, "std": 0.02, "floor": 0.5, "ceiling": 1.0, "better": "lower"},
               "face_auc": {"value": 0.68, "floor": 0.5, "ceiling": 1.0, "better": "lower", "interval": [0.58, 0.78]},
               "c2st_auc": {"value": 0.6, "floor": 0.5, "ceiling": 1.0, "interval": ["<script>", 1]}}  # not numbers: left out
    (copy / "checkpoints" / "last_eval.json").write_text(json.dumps({"metrics": metrics}))
    (copy / "checkpoints" / "stray_eval.json").write_text("not json")  # older and unreadable: skipped
    os.utime(copy / "checkpoints" / "stray_eval.json", (0, 0))
    assert main([str(copy)]) == 0
    page = (copy / "report.html").read_text()
    assert re.search(r"<tr><td>c2st_acc</td><td>0.75 ± 0.02</td><td>0.5</td><td>1</td><td>0.5</td><td>lower</td></tr>", page)
    assert re.search(r"<tr><td>face_auc</td><td>0.68 \[0.58, 0.78\]</td><td>0.5</td><td>1</td><td>0.36</td>", page)
    assert re.search(r"<tr><td>c2st_auc</td><td>0.6</td>", page) and "<script>" not in page
    assert "frame-eval, checkpoints/last_eval.json" in page and "<td>kid</td>" not in page


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_report_in_headless_chromium(run, tmp_path):
    """No console error, every image decoded, no request leaving the file."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium package is needed: apt-get install chromium (.ci/run does)"
    out = tmp_path / "report.html"
    assert main([str(run), "--out", str(out)]) == 0
    errors, requests, outside = [], [], []

    def route(handle):
        requests.append(handle.request.url)
        if handle.request.url.startswith(("file:", "data:")):
            handle.continue_()
        else:
            outside.append(handle.request.url)
            handle.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(out.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            folded = page.evaluate("document.querySelector('details').open")
        finally:
            browser.close()
    assert requests == [out.as_uri()] and not outside and not errors, (outside, errors)
    assert len(images) >= 6 and all(complete and width > 0 for _, complete, width in images), images
    assert folded is False
