"""End-to-end runs of train.py's configs: composition, learning, checkpoints and resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from frame.run import train
from frame.run.checkpoints import load_model
from tests.conftest import CONF_DIR


def make_cfg(tmp_path: Path, *overrides: str):
    """``debug=fast`` with ``overrides``; a non-stationary model's filters see the images at their own
    size unless ``model.energy.net_size`` is given (tiny runs check mechanisms, not the faces' size)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["debug=fast", "logger=csv", f"paths.output_dir={tmp_path}", *overrides])
    if cfg.model.get("energy", {}).get("net_size") is not None and not any("net_size" in o for o in overrides):
        cfg.model.energy.net_size = None
    return cfg


def read_metric(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


@pytest.mark.parametrize("model", ["nonstationary", "stationary"])
@pytest.mark.parametrize("data", ["objects", "texture"])
def test_every_model_and_data_config_runs(tmp_path, model, data):
    keep = ["model.energy.net_size=64"] if model == "nonstationary" else []  # the default's upsampling, end to end
    metrics = train(make_cfg(tmp_path, f"model={model}", f"data={data}", *keep))
    assert 0 <= metrics["train/gap_rel"] < 10
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert len(read_metric(tmp_path, "train/gap_rel")) == 3  # logged every step
    cosines = read_metric(tmp_path, "train/langevin/drift_cos")  # how the chains moved (DriftTrace)
    moves = read_metric(tmp_path, "train/langevin/move_rms")
    assert len(cosines) == len(moves) == 3
    assert all(-1 <= c <= 1 for c in cosines) and all(m > 0 for m in moves)


def test_stationary_run_on_embedded_texture_lowers_the_gap(tmp_path):
    # random VGG weights (no download in tests) respond more weakly than the Caffe ones to
    # the same image, hence a larger learning rate than the real preset's 3e-4
    cfg = make_cfg(
        tmp_path, "model=stationary", "data=texture", "data.image_size=32",
        "model.energy.extractor.layers=[conv1_2,conv2_2]", "model.sampler.n_steps=10",
        "model.sampler.precision=fp32", "model.buffer.n_chains=1", "model.optimizer.lr=0.1",
        "trainer.max_steps=30", "data.steps_per_epoch=30", "callbacks.model_checkpoint.every_n_train_steps=30",
        "callbacks.sample_grid.every_n_steps=30",
    )
    train(cfg)
    gaps = read_metric(tmp_path, "train/gap_rel")
    assert len(gaps) == 30
    assert min(gaps[-5:]) < 0.5 * gaps[0], gaps


def test_checkpoint_holds_the_chains_and_weights(tmp_path):
    train(make_cfg(tmp_path))
    restored = load_model(tmp_path / "checkpoints" / "last.ckpt")
    raw = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    torch.testing.assert_close(restored.buffer.chains, raw["state_dict"]["buffer.chains"])
    assert restored.buffer.chains.abs().sum() > 0  # the chains moved away from the mean image
    assert bool(restored.buffer.initialised)
    weights = [v for k, v in raw["state_dict"].items() if k.startswith("energy.weights.")]
    assert weights and all(w.abs().sum() > 0 for w in weights)


def test_resumed_run_continues_the_same_chains(tmp_path):
    straight = tmp_path / "straight"
    train(make_cfg(straight, "trainer.max_steps=4", "data.steps_per_epoch=4", "model.sampler.precision=fp32"))
    first = tmp_path / "first"
    train(make_cfg(first, "trainer.max_steps=2", "data.steps_per_epoch=4", "model.sampler.precision=fp32"))
    resumed = tmp_path / "resumed"
    train(make_cfg(
        resumed, "trainer.max_steps=4", "data.steps_per_epoch=4", "model.sampler.precision=fp32",
        f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
    ))
    a = load_model(straight / "checkpoints" / "last.ckpt")
    b = load_model(resumed / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(b.buffer.chains, a.buffer.chains)
    for (name, wa), (_, wb) in zip(a.energy.weights.items(), b.energy.weights.items()):
        torch.testing.assert_close(wb, wa, msg=name)


def test_missing_checkpoint_fails_naming_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        train(make_cfg(tmp_path, "ckpt_path=/nonexistent/last.ckpt"))


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    train(make_cfg(tmp_path / "a", "model=stationary"))
    with pytest.raises(ValueError, match="StationaryEnergy"):
        train(make_cfg(tmp_path / "b", "model=nonstationary",
                       f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"))


def test_wandb_runs_offline_and_logs_samples(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(make_cfg(tmp_path, "logger=wandb"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert list(runs[0].glob("files/media/images/samples_*.png"))


def test_frame_sample_draws_a_grid_from_a_checkpoint(tmp_path):
    from PIL import Image

    from frame.cli.sample import main as sample_main

    train(make_cfg(tmp_path / "run"))
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    out = tmp_path / "grid.png"
    assert sample_main(["--ckpt", ckpt, "--out", str(out), "--n", "4", "--save-chains"]) == 0
    chains = torch.load(tmp_path / "grid.pt", weights_only=True)
    saved = load_model(ckpt).buffer.chains
    assert chains.shape == (4, *saved.shape[1:])
    assert not torch.equal(chains[:2], saved[:2])  # the saved chains moved on
    assert Image.open(out).size[0] > 2 * saved.shape[-1]
    with pytest.raises(ValueError, match="size 48"):
        sample_main(["--ckpt", ckpt, "--out", str(tmp_path / "x.png"), "--size", "48", "--debug"])
