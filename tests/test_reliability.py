"""Reliability: killed runs, sweeps, and bad input that fails with a message naming the culprit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from frame.checkpoint import load_model, read_checkpoint
from frame.models import DivergenceError, StationaryFrame
from frame.nets import VGG16Features
from frame.sampling import LangevinSampler
from frame.training import train
from tests.test_training import make_cfg

ROOT = Path(__file__).resolve().parents[1]


def run_train(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@pytest.mark.slow
def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    interval = 2
    proc = run_train("debug=fast", "logger=csv", "trainer.max_steps=10000", "data.steps_per_epoch=10000",
                     f"callbacks.model_checkpoint.every_n_train_steps={interval}",
                     f"paths.output_dir={tmp_path}", f"hydra.run.dir={tmp_path}")
    samples = tmp_path / "samples"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and len(list(samples.glob("step_*.png"))) < 7:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = max(int(p.stem.split("_")[1]) for p in samples.glob("step_*.png"))  # a grid per step
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # complete and readable
    assert done - checkpoint["global_step"] <= interval
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if not p.name.endswith(".ckpt")]
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert torch.isfinite(model.buffer.chains).all()


@pytest.mark.slow
def test_optuna_sweep_runs_three_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = run_train("-m", "hparams_search=optuna_gap", "model=stationary", "data=texture", "debug=fast",
                     "logger=wandb", f"paths.log_dir={tmp_path}")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]
    results = list(tmp_path.rglob("optimization_results.yaml"))
    assert len(results) == 1
    best = yaml.safe_load(results[0].read_text())
    assert set(best["best_params"]) == {"model.sampler.step_size", "model.optimizer.lr", "model.sampler.n_steps"}
    assert 0 <= best["best_value"] < 10
    jobs = [p for p in results[0].parent.iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(jobs) == 3
    for job in jobs:  # each trial its own, finished, offline W&B run
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1


def test_texture_canvas_smaller_than_image_fails_naming_keys():
    with pytest.raises(ValueError, match=r"model.canvas_size \(32\) is smaller than data.image_size \(64\)"):
        StationaryFrame(VGG16Features(["conv1_2"], source="random"), image_size=64, canvas_size=32,
                        sampler=LangevinSampler())


def test_folder_without_images_fails_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=str(tmp_path)):
        train(make_cfg(tmp_path / "run", f"data.root={tmp_path}"))


def test_unknown_layer_fails_naming_it(tmp_path):
    with pytest.raises(Exception, match="conv9_9"):
        train(make_cfg(tmp_path, "model.extractor.layers=[conv9_9]"))


def test_zero_step_size_fails_naming_the_key(tmp_path):
    with pytest.raises(Exception, match="sampler.step_size"):
        train(make_cfg(tmp_path, "model.sampler.step_size=0"))


def test_truncated_checkpoint_fails_naming_the_file(tmp_path):
    train(make_cfg(tmp_path))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((tmp_path / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.ckpt"):
        load_model(broken)


def diverging(tmp_path, *extra):
    # an absurd learning rate: the weights explode within a few iterations
    return make_cfg(tmp_path, "model=stationary", "data=texture", "model.optimizer.lr=1e12",
                    "trainer.max_steps=6", "data.steps_per_epoch=6", *extra)


def test_divergence_stops_the_run_naming_step_and_quantity(tmp_path):
    with pytest.raises(DivergenceError, match=r"Divergence at step \d+: .*(layer conv|chains|weights)") as info:
        train(diverging(tmp_path))
    diagnostic = list((tmp_path / "checkpoints").glob("diverged_step*.ckpt"))
    assert len(diagnostic) == 1 and str(diagnostic[0]) in str(info.value)
    # the last good checkpoint is intact and finite
    good = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(w).all() for w in good.energy.weights.values())
    assert torch.isfinite(good.buffer.chains).all()


def test_rollback_halves_step_size_and_learning_rate_then_gives_up(tmp_path, caplog):
    with pytest.raises(DivergenceError):
        train(diverging(tmp_path, "rollback.max_times=2"))
    rollbacks = [r.getMessage() for r in caplog.records if "Rolling back" in r.getMessage()]
    assert len(rollbacks) == 2
    assert "times 0.5 (1 of 2)" in rollbacks[0] and "times 0.25 (2 of 2)" in rollbacks[1]


def test_rollback_recovers_a_run_that_diverged_once(tmp_path):
    # diverges at lr 30 on these random weights; at a hundredth of that rate it goes on
    metrics = train(make_cfg(tmp_path, "model=stationary", "data=texture", "model.optimizer.lr=30",
                             "model.max_abs_energy=1e6", "trainer.max_steps=6", "data.steps_per_epoch=6",
                             "rollback.max_times=6", "rollback.factor=0.01"))
    assert torch.isfinite(torch.tensor(metrics["train/gap_rel"]))
    last = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6 and last["frame"]["lr_scale"] < 1
