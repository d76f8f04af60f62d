"""frame-eval as a user runs it, and the eval callback as the configs wire it.

One tiny run (``small_run`` of conftest: ``train.py debug=fast``, random VGG-16, 32 px, 6 chains)
is trained once; its checkpoint is scored against the run's own training images, read back from
``<run>/.hydra/config.yaml``. The judge's VGG-16 is random too (``--vgg-source random``), so
the numbers mean nothing: the tests check the command, its table, its JSON and its errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from frame.callbacks import EvalMetrics
from frame.cli.eval import main
from frame.data.images import embedded_images, to_tensor
from frame.eval import NOT_FID
from frame.eval.report import C2ST_METRICS, OBJECT_METRICS, VGG_METRICS, VGG_NOTE
from tests.conftest import CONF_DIR

#: with parallel workers (pytest-xdist), the tests of one trained run share a worker
pytestmark = pytest.mark.xdist_group("small_run")
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "disabled"}


def frame_eval(*args: str) -> subprocess.CompletedProcess:
    script = SCRIPTS / "frame-eval"
    if not script.is_file():
        pytest.fail(f"frame-eval is not installed in {SCRIPTS}: run `pip install -e . --no-deps`")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def run(small_run) -> Path:
    return small_run


def test_fresh_samples_against_the_runs_data(run, tmp_path):
    out = tmp_path / "scores.json"
    done = frame_eval("--ckpt", str(run / "checkpoints" / "last.ckpt"), "--steps", "1", "--n", "12",
                      "--vgg-source", "random", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == NOT_FID
    assert lines[2].split()[:4] == ["metric", "value", "floor", "(real)"]
    rows = {line.split()[0]: line.split() for line in lines[3 : 3 + len(OBJECT_METRICS)]}
    assert list(rows) == list(OBJECT_METRICS)
    for name, cells in rows.items():  # the VGG rows marked, the face judge's and the pixel rows beside them
        assert " ".join(cells).endswith("VGG*" if name in VGG_METRICS else "face net" if name == "face_auc" else "pixels"), cells
    assert rows["c2st_acc"][2].startswith("[") and rows["c2st_acc"][3].endswith("]")  # the 95% interval
    assert VGG_NOTE in lines
    assert "reference: 100 images, the training images of" in done.stdout  # data.embedded=lfw_faces, from the run
    report = json.loads(out.read_text())
    assert report["note"] == NOT_FID and report["kind"] == "objects"
    assert report["samples"]["count"] == 12 and report["samples"]["size"] == [32, 32]
    assert report["reference"]["count"] == 100 and report["reference"]["size"] == [32, 32]
    assert list(report["metrics"]) == list(OBJECT_METRICS)
    for name, score in report["metrics"].items():
        assert isinstance(score["value"], float) and isinstance(score["floor"], float), name
    assert report["metrics"]["kid"]["std"] is not None
    assert report["metrics"]["kid"]["judge"] == "VGG features the model is trained on"
    for name in (*C2ST_METRICS, "spectrum", "grid_peak", "copies", "copy_ratio"):
        assert report["metrics"][name]["judge"] == "pixels", name
    assert report["metrics"]["face_auc"]["judge"] == "a face detector trained on other faces"
    low, high = report["metrics"]["c2st_acc"]["interval"]
    assert 0 <= low <= report["metrics"]["c2st_acc"]["value"] <= high <= 1
    assert report["metrics"]["copies"]["ceiling"] == 1 and report["metrics"]["grid_peak"]["ceiling"] == 1.5


def test_too_few_samples_is_one_line(tmp_path, capsys):
    from omegaconf import OmegaConf

    from frame.run import train
    from tests.test_training import make_cfg

    cfg = make_cfg(tmp_path, "model.energy.extractor.layers=[conv1_1]")  # debug=fast: 2 chains
    train(cfg)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # what train.py's Hydra writes
    assert main(["--ckpt", str(tmp_path / "checkpoints" / "last.ckpt"), "--vgg-source", "random"]) == 2  # the 2 saved chains
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("frame-eval: error: ")
    assert "at least 6 samples, got 2" in err
    assert not (tmp_path / "checkpoints" / "last_eval.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--ckpt", "missing.ckpt"], "missing.ckpt"),
    (["--samples", "{empty}", "--data", "lfw_faces"], "{empty}"),
    (["--samples", "{images}"], "give the reference images with --data"),
    (["--samples", "{images}", "--data", "no_such_set"], "no_such_set"),
    (["--samples", "{images}", "--data", "lfw_faces", "--steps", "5"], "--steps draws fresh samples from a checkpoint"),
    (["--samples", "{images}", "--data", "{images}", "--out", "{images}/0.png"], "would overwrite"),
    (["--ckpt", "{ckpt}", "--out", "{ckpt}"], "would overwrite --ckpt"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 80, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    names = {"empty": tmp_path / "empty", "images": tmp_path / "images", "ckpt": run / "checkpoints" / "last.ckpt"}
    args = [arg.format(**names) for arg in args]
    assert main([*args, "--vgg-source", "random"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("frame-eval: error: ")
    assert message.format(**names) in err


def test_default_callbacks_evaluate_and_debug_fast_does_not(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        default = compose("train", overrides=[f"paths.output_dir={tmp_path}", "vgg_source=random"])
        fast = compose("train", overrides=["debug=fast", f"paths.output_dir={tmp_path}"])
    callback = hydra.utils.instantiate(default.callbacks.eval_metrics)
    assert isinstance(callback, EvalMetrics)
    assert (callback.every_n_steps, callback.kind, callback.source) == (50, "auto", "random")
    assert fast.callbacks.eval_metrics is None


def test_callback_kind_auto_follows_the_training_images():
    faces = to_tensor(embedded_images("lfw_faces")[:40], 32)
    brick = to_tensor(embedded_images("brick"), 64)
    module = SimpleNamespace(device=torch.device("cpu"))
    for images, chains, kind, reference in ((faces, 6, "objects", 20), (brick, 6, "texture", 1), (faces, 2, "texture", 20)):
        callback = EvalMetrics(kind="auto", max_reference=20, source="random", min_size=32)
        trainer = SimpleNamespace(datamodule=SimpleNamespace(observed_images=lambda images=images: images))
        evaluator = callback._evaluator(trainer, module, chains)
        assert (evaluator.kind, len(evaluator.reference)) == (kind, reference)
