"""train.py runs of the learned-filter models: configs, learning, checkpoints, growth, scoring."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from frame.cli.score import main as score_main
from frame.run import train
from frame.run.checkpoints import load_model
from tests.test_training import make_cfg, read_metric

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("learned_training")

TINY_NET = "model.energy.layers=[{filters:4,kernel:3,stride:2}]"
TWO_LAYERS = "model.energy.layers=[{filters:4,kernel:3,stride:2},{filters:6,kernel:3,stride:2}]"


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory) -> Path:
    """A 3-step debug run of a one-layer net learned from scratch on the embedded faces."""
    run = tmp_path_factory.mktemp("scratch_run")
    train(make_cfg(run, "model=scratch", "data=faces", "data.image_size=16", TINY_NET, "model.sampler.precision=fp32"))
    return run


def test_gconvnet_config_runs_and_logs_detector_maps(tmp_path):
    metrics = train(make_cfg(tmp_path, "model=gconvnet", "data=objects", "model.energy.kernel_size=3", "model.energy.n_filters=3"))
    assert 0 <= metrics["train/gap_rel"] < 10
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert (tmp_path / "detectors" / "step_000003.png").is_file()  # written at the end
    freq = read_metric(tmp_path, "detectors/freq_obs/j00")
    assert len(freq) == 3 and all(0 <= f <= 1 for f in freq)
    # checkpoint round trip: learned filters and chains come back exactly
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)["state_dict"]
    restored = load_model(ckpt)
    torch.testing.assert_close(restored.energy.filters.weight, raw["energy.filters.weight"])
    torch.testing.assert_close(restored.energy.filters.bias, raw["energy.filters.bias"])
    torch.testing.assert_close(restored.buffer.chains, raw["buffer.chains"])
    assert restored.buffer.chains.abs().sum() > 0 and raw["energy.filters.bias"].abs().sum() > 0  # learned


def test_scratch_config_runs_with_the_default_face_net(tmp_path):
    metrics = train(make_cfg(tmp_path, "model=scratch", "data=faces"))
    assert 0 <= metrics["train/gap_rel"] < 10
    restored = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert [c.out_channels for c in restored.energy.convs] == [96, 128, 256, 512]
    assert restored.buffer.chains.shape == (2, 1, 32, 32)  # grey chains


def test_scratch_checkpoint_round_trip(scratch_run):
    ckpt = scratch_run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)["state_dict"]
    restored = load_model(ckpt)
    for key, value in raw.items():
        if key == "buffer._extra_state":  # the chains' random stream
            assert torch.equal(restored.state_dict()[key]["state"], value["state"])
        else:
            torch.testing.assert_close(restored.state_dict()[key], value, msg=key)
    assert restored.buffer.chains.shape == (2, 1, 16, 16) and bool(restored.buffer.initialised)
    x = restored.buffer.chains
    with torch.no_grad():
        f = restored.energy(x)
    assert torch.isfinite(f).all() and f.abs().sum() > 0


def test_scratch_reference_mean_is_the_training_images_mean_and_is_checkpointed(scratch_run):
    """model.energy.reference_mean=data (the default): q(I) is centred on the mean training face, taken
    from the data module when training starts and restored from the checkpoint."""
    from frame.data.images import embedded_images, to_tensor

    restored = load_model(scratch_run / "checkpoints" / "last.ckpt")
    space = restored.input_space
    assert space.reference_mean == "data" and bool(space.fitted) and space.mean.shape == (1, 1, 16, 16)
    faces = to_tensor(embedded_images("lfw_faces"), 16, grayscale=True)
    torch.testing.assert_close(space.mean, faces[:, :1].mean(0, keepdim=True) * 255)
    assert space.mean.std() > 1.0  # an image (the mean face), not a constant


def test_gconvnet_run_on_tiny_images_lowers_the_gap(tmp_path):
    train(make_cfg(
        tmp_path, "model=gconvnet", "data=texture", "model.energy.extractor.layers=[conv1_2]", "model.energy.n_filters=4",
        "model.energy.kernel_size=3", "model.sampler.n_steps=10", "model.sampler.step_size=0.3", "model.sampler.precision=fp32",
        "model.optimizer.lr=3e-3",
        "callbacks.detector_maps.metrics_every_n_steps=0", "trainer.max_steps=20", "data.steps_per_epoch=20",
        "callbacks.sample_grid.every_n_steps=100", "callbacks.model_checkpoint.every_n_train_steps=100",
    ))
    gaps = read_metric(tmp_path, "train/gap_rel")
    energies = read_metric(tmp_path, "train/energy_obs")
    assert len(gaps) == 20
    # the grey chains start at the mean grey, near the grey brick: the gap first rises as the
    # chains move, then falls as the filters learn
    assert min(gaps[-3:]) < 0.6 * max(gaps[:3]), gaps
    assert energies[-1] > 0  # the filters are alive: not a zero gap from dead filters


def test_scratch_run_on_tiny_images_lowers_the_gap(tmp_path):
    # A broad reference distribution and larger steps let 20 iterations show the trend.
    train(make_cfg(
        tmp_path, "model=scratch", "data=faces", "data.image_size=16",
        "model.energy.layers=[{filters:8,kernel:3,stride:2},{filters:16,kernel:3,stride:2}]", "data.batch_size=16",
        "model.buffer.n_chains=16", "model.sampler.n_steps=20", "model.sampler.precision=fp32", "model.sampler.sigma=60",
        "model.sampler.step_size=2", "model.optimizer.lr=1e-2", "model.scheduler.final_factor=1",
        "trainer.max_steps=20", "data.steps_per_epoch=20",
        "callbacks.sample_grid.every_n_steps=100", "callbacks.model_checkpoint.every_n_train_steps=100",
    ))
    gaps = read_metric(tmp_path, "train/gap_rel")
    assert len(gaps) == 20
    # the grey chains start at the mean grey, near the grey brick: the gap first rises as the
    # chains move, then falls as the filters learn
    assert min(gaps[-3:]) < 0.6 * max(gaps[:3]), gaps


def test_layer_by_layer_growth_keeps_the_lower_layer_frozen(scratch_run, tmp_path):
    stage1 = scratch_run / "checkpoints" / "last.ckpt"
    layer1 = torch.load(stage1, weights_only=True)["state_dict"]
    train(make_cfg(
        tmp_path, "model=scratch", "data=faces", "data.image_size=16", TWO_LAYERS, "model.sampler.precision=fp32",
        f"init_from={stage1}", "model.energy.frozen_layers=1",
    ))
    grown = load_model(tmp_path / "checkpoints" / "last.ckpt")
    # layer 1 is the first stage's, unchanged by 3 updates of the second stage ...
    torch.testing.assert_close(grown.energy.convs[0].weight, layer1["energy.convs.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(grown.energy.convs[0].bias, layer1["energy.convs.0.bias"], rtol=0, atol=0)
    # ... while layer 2 learned: its biases started at 0
    assert grown.energy.convs[1].bias.abs().sum() > 0
    assert not any(p.requires_grad for p in grown.energy.convs[0].parameters())


def test_frame_score_writes_f_per_image_and_prints_the_table(scratch_run, tmp_path, capsys):
    folders = []
    for name, value in (("bright", 230), ("dark", 20)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            Image.new("L", (20, 24), value + i).save(folder / f"{i}.png")
        folders.append(folder)
    out = tmp_path / "scores.csv"
    assert score_main(["--ckpt", str(scratch_run / "checkpoints" / "last.ckpt"), "--input", str(folders[0]),
                       "--input", str(folders[1]), "--out", str(out), "--device", "cpu"]) == 0
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png", "2.png"] * 2
    model = load_model(scratch_run / "checkpoints" / "last.ckpt")
    image = torch.full((1, 3, 16, 16), 230 / 255)
    with torch.no_grad():
        expected = model.energy(model.to_input(image)).item()
    assert float(rows[0]["f"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert [r["input"] for r in rows] == [str(folders[0])] * 3 + [str(folders[1])] * 3
    printed = capsys.readouterr().out
    assert "mean" in printed and "std" in printed and "bright" in printed
    # --score log_p: f(I; w) + log q(I), with log q = -||x||^2 / 2 sigma^2 on the input x
    score_main(["--ckpt", str(scratch_run / "checkpoints" / "last.ckpt"), "--input", str(folders[0]),
                "--out", str(out), "--device", "cpu", "--score", "log_p"])
    with open(out) as handle:
        first = next(csv.DictReader(handle))
    x = model.to_input(image)
    log_q = -(x.double() ** 2).sum().item() / (2 * model.sampler.sigma**2)
    assert log_q < 0 and float(first["log_p"]) == pytest.approx(expected + log_q, rel=1e-5)
    assert "log p(I; w)" in capsys.readouterr().out


def test_frame_sample_cold_starts_a_cold_start_model_from_a_flat_image(scratch_run, tmp_path):
    from frame.cli.sample import main as sample_main
    from frame.synthesis import initial_chains

    ckpt = scratch_run / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    start = model.to_images(initial_chains(model, "flat", 3, None))
    mean_face = model.input_space.mean / 255
    torch.testing.assert_close(start, mean_face.mean().expand_as(start), atol=1e-5, rtol=0)
    sample_main(["--ckpt", str(ckpt), "--out", str(tmp_path / "s.png"), "--n", "2", "--steps", "0", "--save-chains",
                 "--init", "flat"])
    torch.testing.assert_close(model.to_images(torch.load(tmp_path / "s.pt", weights_only=True)), start[:2], atol=1e-5, rtol=0)
