"""Reliability: killed and stopped runs, run folders, sweeps, and bad input that fails with a
message naming the culprit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from frame.energies import StationaryEnergy
from frame.models import FrameModel
from frame.nets import VGG16Features, weights
from frame.run import CheckpointWriteError, DivergenceError, train
from frame.run.checkpoints import load_model, read_checkpoint
from frame.sampling import LangevinSampler
from tests.test_training import make_cfg

ROOT = Path(__file__).resolve().parents[1]
# a run of a few hundred milliseconds per step on 2 CPU cores
TINY = ("model=stationary", "data=texture", "data.image_size=16", "model.energy.extractor.layers=[conv1_1]")


def run_train(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Exit status and stderr of a train.py process."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def grid_steps(samples: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in samples.glob("step_*.png"))  # a grid per step


# -- killed and stopped runs ------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_loses_at_most_one_checkpoint_interval(tmp_path):
    interval = 2
    proc = run_train("debug=fast", "logger=csv", *TINY, "trainer.max_steps=10000", "data.steps_per_epoch=10000",
                     f"callbacks.model_checkpoint.every_n_train_steps={interval}", f"hydra.run.dir={tmp_path}")
    samples = tmp_path / "samples"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and len(grid_steps(samples)) < 7:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    done = grid_steps(samples)[-1]
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # complete and readable
    assert done - checkpoint["global_step"] <= interval
    # a kill mid-write may leave the writer's temporary file (never a broken .ckpt); the next save removes it
    leftovers = [p for p in (tmp_path / "checkpoints").iterdir() if not p.name.endswith(".ckpt")]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers), leftovers
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert torch.isfinite(model.buffer.chains).all()


@pytest.mark.slow
def test_sigterm_saves_the_step_it_was_at_and_exits_non_zero(tmp_path):
    # Slurm and Kubernetes send SIGTERM before killing; no regular checkpoint falls in this run
    proc = run_train("debug=fast", "logger=csv", *TINY, "trainer.max_steps=10000", "data.steps_per_epoch=10000",
                     "callbacks.model_checkpoint.every_n_train_steps=1000", f"hydra.run.dir={tmp_path}")
    deadline = time.time() + 120
    while time.time() < deadline and len(grid_steps(tmp_path / "samples")) < 3:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    status, err = finish(proc)
    assert status == 128 + signal.SIGTERM, err[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    step = grid_steps(tmp_path / "samples")[-1]  # the step the run was at when it stopped
    assert read_checkpoint(last)["global_step"] == step >= 3
    assert torch.isfinite(load_model(last).buffer.chains).all()
    line = err.strip().splitlines()[-1]
    assert line.startswith("train.py: error: stopped by SIGTERM") and f"ckpt_path={last}" in line, err[-3000:]


@pytest.mark.slow
def test_unwritable_checkpoint_folder_fails_loudly(tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder: not even root can write under it")
    folder = tmp_path / "afile" / "checkpoints"
    status, err = finish(run_train("debug=fast", "logger=csv", *TINY, f"callbacks.model_checkpoint.dirpath={folder}",
                                   f"hydra.run.dir={tmp_path / 'run'}"))
    assert status == 2, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("train.py: error: cannot write checkpoints to") and str(folder) in line, err[-3000:]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "samples").exists()  # it stopped before the first step


def test_checkpoint_writes_fail_loudly_and_leave_no_partial_file(tmp_path, monkeypatch):
    from frame.run import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    io.save_checkpoint({"x": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert torch.equal(torch.load(tmp_path / "ok.ckpt", weights_only=True)["x"], torch.ones(2))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match=f"cannot write checkpoints to {tmp_path}"):
        io.save_checkpoint({"x": torch.zeros(2)}, tmp_path / "ok.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.ckpt"]  # the old file, whole; no temporary
    assert torch.equal(torch.load(tmp_path / "ok.ckpt", weights_only=True)["x"], torch.ones(2))


def test_the_next_save_removes_a_killed_writers_temporary_file(tmp_path):
    from frame.run import AtomicCheckpointIO

    stale = tmp_path / ".last.ckpt.ab12cd.tmp"  # what a writer killed mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".step_000002.ckpt.ef34gh.tmp"  # another checkpoint's: not this save's business
    other.write_bytes(b"x")
    AtomicCheckpointIO().save_checkpoint({"x": torch.ones(2)}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "last.ckpt"]


@pytest.mark.slow
# -- run folders --------------------------------------------------------------------------------
def test_two_runs_started_in_the_same_second_get_two_folders(tmp_path):
    procs = [run_train("debug=fast", "logger=csv", *TINY, "trainer.max_steps=1", f"seed={seed}",
                       f"paths.log_dir={tmp_path}") for seed in (1, 2)]
    for proc in procs:
        status, err = finish(proc)
        assert status == 0, err[-3000:]
    runs = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 2, runs
    seeds = set()
    for run in runs:  # each folder holds one run's config and checkpoint
        seeds.add(yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"])
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step_000001.ckpt"]
    assert seeds == {1, 2}


def test_a_new_run_refuses_a_folder_holding_another_runs_checkpoints(tmp_path):
    train(make_cfg(tmp_path, *TINY, "trainer.max_steps=1"))
    before = (tmp_path / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(ValueError, match=f"{tmp_path / 'checkpoints'} already holds checkpoints of another run"):
        train(make_cfg(tmp_path, *TINY, "trainer.max_steps=2"))
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == before
    # continuing that run in its own folder is a resume
    train(make_cfg(tmp_path, *TINY, "trainer.max_steps=2", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"))
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_a_requeued_slurm_job_resumes_from_its_checked_hpc_checkpoint(tmp_path, monkeypatch):
    # Lightning saves <run folder>/hpc_ckpt_<n>.ckpt on SIGUSR1 and requeues the job; the job
    # comes back into the same folder (a stable hydra.run.dir) and resumes, after our checks
    train(make_cfg(tmp_path / "first", *TINY, "trainer.max_steps=1"))
    run = tmp_path / "job"
    run.mkdir()
    (run / "hpc_ckpt_1.ckpt").write_bytes((tmp_path / "first" / "checkpoints" / "last.ckpt").read_bytes())
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "frame")
    train(make_cfg(run, *TINY, "trainer.max_steps=2"))
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert grid_steps(run / "samples") == [2]  # one step run: it went on from step 1
    checkpoint = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=True)
    checkpoint["frame"]["model_config"]["sampler"]["_target_"] = "builtins.open"
    torch.save(checkpoint, run / "hpc_ckpt_2.ckpt")
    with pytest.raises(ValueError, match="hpc_ckpt_2.ckpt: refused model.sampler._target_='builtins.open'"):
        train(make_cfg(run, *TINY, "trainer.max_steps=3"))


# -- divergence and rollback ---------------------------------------------------------------------
def diverging(tmp_path, *extra):
    # a learning rate far too large for these random weights: the energy runs away at step 2
    return make_cfg(tmp_path, *TINY, "model.optimizer.lr=30", "callbacks.divergence_guard.max_abs_energy=1e6",
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


def test_rollback_backs_off_then_gives_up(tmp_path, caplog):
    with pytest.raises(DivergenceError):
        train(diverging(tmp_path, "rollback.max_times=2"))
    rollbacks = [r.getMessage() for r in caplog.records if "Rolling back" in r.getMessage()]
    assert len(rollbacks) == 2
    assert "times 0.5 (1 of 2)" in rollbacks[0] and "times 0.25 (2 of 2)" in rollbacks[1]


def test_rollback_resumes_from_the_checkpoint_this_run_wrote(tmp_path, caplog):
    # another run's last.ckpt where this run's would be by default, and this run's elsewhere
    train(make_cfg(tmp_path / "other", *TINY, "trainer.max_steps=1"))
    decoy = tmp_path / "checkpoints" / "last.ckpt"
    decoy.parent.mkdir()
    decoy.write_bytes((tmp_path / "other" / "checkpoints" / "last.ckpt").read_bytes())
    mine = tmp_path / "mine"
    caplog.set_level(logging.WARNING)
    cfg = diverging(tmp_path, f"callbacks.model_checkpoint.dirpath={mine}", "rollback.max_times=1")
    with pytest.raises(DivergenceError, match=str(mine)):
        train(cfg)
    rollbacks = [r.getMessage() for r in caplog.records if "Rolling back" in r.getMessage()]
    assert len(rollbacks) == 1 and f"Rolling back to {mine / 'last.ckpt'} " in rollbacks[0]
    assert decoy.read_bytes() == (tmp_path / "other" / "checkpoints" / "last.ckpt").read_bytes()
    diagnostic = max(mine.glob("diverged_step*.ckpt"))  # written again by the resumed attempt
    assert read_checkpoint(diagnostic)["callbacks"]["DivergenceGuard"]["backoff"] == 0.5
    # the resumed attempt's sampler was built with half the step size; the run's config is untouched
    assert read_checkpoint(diagnostic)["frame"]["model_config"]["sampler"]["step_size"] == 0.5 * cfg.model.sampler.step_size
    assert read_checkpoint(mine / "last.ckpt")["frame"]["model_config"]["sampler"]["step_size"] == cfg.model.sampler.step_size


@pytest.mark.slow
# -- configuration errors name their key ----------------------------------------------------------
def test_config_error_is_one_line_naming_the_key(tmp_path):
    status, err = finish(run_train("debug=fast", "logger=csv", *TINY, "seed=abc", f"hydra.run.dir={tmp_path}"))
    assert status == 2
    assert err.strip().splitlines() == [
        "train.py: error: seed must be an integer in [0, 2**32), got 'abc' (--debug shows the traceback)"]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(("override", "fragment"), [
    ("model.buffer.gridd=4", "Could not override 'model.buffer.gridd'. To append to your config use +model.buffer.gridd=4"),
    ("model=nonexist", "Could not find 'model/nonexist' Available options in 'model': gconvnet"),
])
def test_unknown_key_or_option_is_one_line_naming_it(tmp_path, override, fragment):
    status, err = finish(run_train(override, f"hydra.run.dir={tmp_path / 'run'}"))
    assert status == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("train.py: error: ") and fragment in line and "search path" not in line
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run folder


def test_a_moved_key_names_the_new_one(tmp_path):
    status, err = finish(run_train("experiment=vgg_recovery", "model.recovery.test_steps=5", f"hydra.run.dir={tmp_path}"))
    assert status == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("train.py: error: model.recovery.test_steps is now model.buffer.test_steps: ")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize(("override", "key"), [
    ("model.sampler.n_steps=0", "model.sampler.n_steps"),
    ("model.sampler.step_size=0", "model.sampler.step_size"),
    ("model.optimizer.lr=-1", "model.optimizer.lr"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("rollback.factor=1.5", "rollback.factor"),
    ("data.steps_per_epoch=0", "data.steps_per_epoch"),
    ("seed=-1", "seed"),
    ("model.sampler.sigma=0", "model.sampler.sigma"),
    ("model.image_size=0", "model.image_size"),
    ("model.buffer.reinit_fraction=2", "model.buffer.reinit_fraction"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("callbacks.sample_grid.max_images=0", "callbacks.sample_grid.max_images"),
    ("callbacks.model_checkpoint.save_top_k=-2", "callbacks.model_checkpoint.save_top_k"),
])
def test_out_of_range_value_fails_naming_the_key(tmp_path, override, key):
    with pytest.raises(ValueError, match=rf"^{key} must be"):
        train(make_cfg(tmp_path, *TINY, override))
    assert not (tmp_path / "checkpoints").exists()


def test_resume_with_another_image_size_names_the_key(tmp_path):
    train(make_cfg(tmp_path / "a", *TINY, "trainer.max_steps=1"))
    with pytest.raises(ValueError, match=r"model\.image_size is 16 there, 24 here"):
        train(make_cfg(tmp_path / "b", *TINY, "data.image_size=24",
                       f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"))


def test_texture_canvas_smaller_than_image_fails_naming_keys():
    with pytest.raises(ValueError, match=r"model.canvas_size \(32\) is smaller than data.image_size \(64\)"):
        FrameModel(StationaryEnergy(VGG16Features(["conv1_2"], source="random")), sampler=LangevinSampler(),
                   image_size=64, canvas_size=32)


def test_folder_without_images_fails_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=str(tmp_path)):
        train(make_cfg(tmp_path / "run", f"data.root={tmp_path}"))


def test_unknown_layer_fails_naming_it(tmp_path):
    with pytest.raises(Exception, match="conv9_9"):
        train(make_cfg(tmp_path, "model.energy.extractor.layers=[conv9_9]"))


def test_truncated_checkpoint_fails_naming_the_file(tmp_path):
    train(make_cfg(tmp_path, *TINY, "trainer.max_steps=1"))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((tmp_path / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.ckpt"):
        load_model(broken)


# -- loggers, weights, sweeps ----------------------------------------------------------------------
def test_logger_none_runs_with_the_default_callbacks(tmp_path):
    metrics = train(make_cfg(tmp_path, *TINY, "logger=none"))
    assert 0 <= metrics["train/gap_rel"] < 10
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert not (tmp_path / "csv").exists()


def test_weights_cache_is_checked_against_the_pinned_checksum(tmp_path, monkeypatch):
    # a substituted file with a matching .sha256 next to it: refused, and fetched again
    path = tmp_path / weights.CACHE_FILENAME
    weights._write_cache(weights.random_state_dict(), path)
    fetched = []
    monkeypatch.setattr(weights, "_fetch_state_dict", lambda root: fetched.append(root) or weights.random_state_dict(1))
    with pytest.warns(UserWarning, match=rf"{weights.CACHE_FILENAME}.*pinned"):
        weights.load_caffe(tmp_path)
    assert fetched == [tmp_path]


@pytest.mark.slow
def test_optuna_sweep_runs_three_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    status, err = finish(run_train("-m", "hparams_search=optuna_gap", "debug=fast", "logger=wandb", *TINY,
                                   f"paths.log_dir={tmp_path}"), timeout=600)
    assert status == 0, err[-3000:]
    results = list(tmp_path.rglob("optimization_results.yaml"))
    assert len(results) == 1
    best = yaml.safe_load(results[0].read_text())
    assert set(best["best_params"]) == {"model.sampler.step_size", "model.optimizer.lr", "model.sampler.n_steps"}
    assert 0 <= best["best_value"] < 10
    jobs = [p for p in results[0].parent.iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(jobs) == 3
    for job in jobs:  # each trial its own, finished, offline W&B run
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
