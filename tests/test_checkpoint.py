"""Checkpoints rebuild their model without a weight source, and old checkpoints still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import frame.nets.vgg as vgg
from frame.run.checkpoints import load_model, read_checkpoint

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, energy, channels", [
    ("legacy_nonstationary.ckpt", "NonStationaryEnergy", 3),
    ("legacy_scratch.ckpt", "ScratchEnergy", 1),
])
def test_checkpoints_of_the_previous_format_load(name, energy, channels, monkeypatch):
    """Written by frame before the config mirrored the objects (model.n_chains, a class per variant)."""
    monkeypatch.setattr(vgg, "load_vgg16_state_dict", lambda *a, **k: pytest.fail("read a weight source"))
    raw = torch.load(DATA / name, weights_only=True)
    model = load_model(DATA / name)
    assert type(model.energy).__name__ == energy
    assert model.buffer.chains.shape[1] == channels
    torch.testing.assert_close(model.buffer.chains, raw["state_dict"]["buffer.chains"])
    # the chains' random stream came along (it used to sit beside the state dict)
    assert torch.equal(model.buffer.get_extra_state()["state"], raw["frame"]["noise_generator"]["state"])
    for key, value in raw["state_dict"].items():
        key = key.replace(".preprocessing.", ".input_space.")
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    assert read_checkpoint(DATA / name)["frame"]["model_config"]["buffer"]["n_chains"] == raw["frame"]["model_config"]["n_chains"]


def test_a_checkpoint_holds_its_filter_weights_and_no_path(tmp_path, monkeypatch):
    from frame.run import train
    from tests.test_training import make_cfg

    train(make_cfg(tmp_path, "model=stationary", "model.energy.extractor.layers=[conv1_1]", "trainer.max_steps=1"))
    raw = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert str(Path.home()) not in str(raw["frame"]) and "cache_dir" not in str(raw["frame"])
    monkeypatch.setattr(vgg, "load_vgg16_state_dict", lambda *a, **k: pytest.fail("read a weight source"))
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(model.energy.extractor.features[0].weight, raw["state_dict"]["energy.extractor.features.0.weight"])


def test_no_path_of_the_run_is_saved_and_resume_in_its_folder_keeps_track(tmp_path):
    from frame.run import RunCheckpoint, train
    from tests.test_training import make_cfg

    train(make_cfg(tmp_path, "model=stationary", "model.energy.extractor.layers=[conv1_1]", "trainer.max_steps=2"))
    raw = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert str(tmp_path) not in repr({k: v for k, v in raw.items() if k != "state_dict"})
    (state,) = [v for k, v in raw["callbacks"].items() if k.startswith("RunCheckpoint")]
    assert state["last_model_path"] == "last.ckpt"
    # the same folder: the paths come back; another folder: nothing of the old one is kept
    for folder, expected in ((tmp_path / "checkpoints", str(tmp_path / "checkpoints" / "last.ckpt")),
                             (tmp_path / "elsewhere", "")):
        callback = RunCheckpoint(dirpath=folder)
        callback.load_state_dict(state)
        assert callback.last_model_path == expected


@pytest.mark.parametrize("fast", [False, True])
def test_a_bf16_checkpoint_samples_in_fp32_where_bf16_is_slow(fast, monkeypatch):
    """Checkpoints of earlier versions say bf16; a CPU without AVX512_BF16 or AMX emulates it ~25x slower."""
    import frame.run.checkpoints as checkpoint

    monkeypatch.setattr(checkpoint, "fast_bf16", lambda device: fast)
    assert torch.load(DATA / "legacy_scratch.ckpt", weights_only=True)["frame"]["model_config"]["sampler"]["precision"] == "bf16"
    if fast:
        assert load_model(DATA / "legacy_scratch.ckpt").sampler.precision == "bf16"
        return
    with pytest.warns(UserWarning, match=r"legacy_scratch\.ckpt: model\.sampler\.precision=bf16 runs far slower"):
        model = load_model(DATA / "legacy_scratch.ckpt")
    assert model.sampler.precision == "auto"


@pytest.mark.parametrize("name, energy", [("format2_recovery.ckpt", "NonStationaryEnergy"), ("format2_stationary.ckpt", "StationaryEnergy")])
def test_checkpoints_of_the_current_format_load_and_resume(name, energy, tmp_path, monkeypatch):
    """Written by frame in format 2 (a recovery model and a plain one): they rebuild, recover and resume."""
    from frame.recovery.inpaint import recovery_step_size, recovery_steps
    from frame.run import train
    from tests.test_training import make_cfg, read_metric

    monkeypatch.setattr(vgg, "load_vgg16_state_dict", lambda *a, **k: pytest.fail("read a weight source"))
    raw = torch.load(DATA / name, weights_only=True)
    model = load_model(DATA / name)
    assert type(model.energy).__name__ == energy
    for key, value in raw["state_dict"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    assert torch.equal(model.buffer.get_extra_state()["state"], raw["state_dict"]["buffer._extra_state"]["state"])
    recovery = raw["frame"]["model_config"]["recovery"]
    assert (recovery_steps(model), recovery_step_size(model)) == ((80, 0.05) if recovery else (model.sampler.n_steps, model.sampler.step_size))
    monkeypatch.undo()
    (tmp_path / "old").mkdir()
    resumed = tmp_path / "old" / name
    resumed.write_bytes((DATA / name).read_bytes())
    # the stored recovery model has no net_size in its config: its filters see the images at their own size
    preset = ["experiment=vgg_recovery", "data.batch_size=4", "model.energy.net_size=null"] if recovery else ["model=stationary", "data=texture"]
    train(make_cfg(tmp_path / "run", *preset, "model.energy.extractor.layers=[conv1_1]", "data.image_size=16",
                   f"model.buffer.n_chains={raw['frame']['model_config']['buffer']['n_chains']}", "trainer.max_steps=3",
                   f"ckpt_path={resumed}"))
    assert len(read_metric(tmp_path / "run", "train/gap_rel")) == 1  # steps 1-2 came from the checkpoint


def test_resuming_a_checkpoint_of_another_energy_names_both():
    from frame.energies import StationaryEnergy
    from frame.models import FrameModel
    from frame.run.checkpoints import check_resumable
    from frame.sampling import LangevinSampler
    from tests.tiny import TinyExtractor

    model = FrameModel(StationaryEnergy(TinyExtractor()), LangevinSampler(n_steps=1), image_size=8)
    other = {"frame": {"format": 4, "energy": "NonStationaryEnergy", "model_config": {}}, "state_dict": {}}
    with pytest.raises(ValueError, match=r"ckpt_path=x.ckpt holds a model with a NonStationaryEnergy but the run builds one with a StationaryEnergy"):
        check_resumable(model, other, "x.ckpt")
    check_resumable(model, {**other, "frame": {**other["frame"], "energy": "StationaryEnergy"}}, "x.ckpt")  # the same energy passes
