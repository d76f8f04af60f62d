"""Crafted checkpoints: refused by train.py resume and by every command, before anything runs.

A checkpoint is a file from outside. Each payload below writes a marker file when it is built
(``test_payloads_are_live`` shows it); loading the crafted checkpoint must refuse it and leave
no marker, and the commands must write none of their outputs.
"""

from __future__ import annotations

import copy
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from PIL import Image

from frame.run import train
from frame.run.checkpoints import CheckpointError, load_model, read_checkpoint
from tests.test_training import make_cfg

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("security")

ROOT = Path(__file__).resolve().parents[1]
TINY = ("model=stationary", "data=texture", "data.image_size=16", "model.energy.extractor.layers=[conv1_1]")


def payloads(marker: Path) -> dict[str, dict]:
    """One config per module the issue names, each writing `marker` when instantiated."""
    return {
        "pathlib": {"_target_": "pathlib.Path.write_text", "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
                    "data": "pwned"},
        "os": {"_target_": "os.system", "command": f"touch {marker}"},
        "builtins": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "subprocess": {"_target_": "subprocess.run", "args": ["touch", str(marker)]},
    }


def plant(config: dict, place: str, payload: dict) -> None:
    """Puts `payload` into a stored model config: a new key, a nested object, a list item."""
    if place == "new_key":
        config["max_abs_energy"] = payload
    elif place == "nested":
        config["energy"]["extractor"]["input_space"] = payload
    elif place == "list_item":
        config["energy"]["extractor"]["layers"] = [payload]
    elif place == "replaced_target":
        config["sampler"] = {**config["sampler"], **payload}


class Pickled:
    """An object whose unpickling writes the marker (what ``weights_only=False`` would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (pathlib.Path(self.marker), "pwned")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("good")
    train(make_cfg(run, *TINY, "trainer.max_steps=1"))
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    Image.new("RGB", (16, 16), (120, 80, 40)).save(folder / "a.png")
    return folder


def crafted(good: dict, tmp_path: Path, edit) -> tuple[Path, Path]:
    """A copy of a real checkpoint changed by `edit(checkpoint, marker)`; returns (file, marker)."""
    marker = tmp_path / "pwned"
    checkpoint = copy.deepcopy(good)
    edit(checkpoint, marker)
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def config_edit(kind: str, place: str):
    def edit(checkpoint, marker):
        plant(checkpoint["frame"]["model_config"], place, payloads(marker)[kind])
    return edit


def raw_edit(change):
    def edit(checkpoint, marker):
        change(checkpoint["frame"]["model_config"], marker)
    return edit


CASES = {
    **{f"{kind}-{place}": config_edit(kind, place)
       for kind in ("pathlib", "os", "builtins", "subprocess")
       for place in ("new_key", "nested", "list_item", "replaced_target")},
    # Hydra's positional arguments on an allowed target
    "args-on-allowed-target": raw_edit(lambda c, m: c["sampler"].update(_args_=[str(m)])),
    # interpolations and resolvers decode into new configs when resolved
    "interpolation": raw_edit(lambda c, m: c.update(image_size="${oc.env:HOME}")),
    "resolver": raw_edit(lambda c, m: c["sampler"].update(
        step_size="${oc.create:{_target_: os.system, command: 'touch " + str(m) + "'}}")),
    "interpolated-key": raw_edit(lambda c, m: c.update({"${oc.env:HOME}": 1})),
    "non-string-key": raw_edit(lambda c, m: c["energy"].update({1: "x"})),
    "non-string-target": raw_edit(lambda c, m: c["sampler"].update(_target_=["os.system"])),
    "deep-nesting": raw_edit(lambda c, m: c.update(energy=nest(200))),
    "pickled-object": lambda checkpoint, marker: checkpoint.update(payload=Pickled(marker)),
    # a format-1 checkpoint: its old keys are rewritten into the current config, then checked
    "old-format": lambda checkpoint, marker: checkpoint["frame"].update(
        format=1, variant="StationaryFrame", model_config={"extractor": payloads(marker)["os"], "chains": {}}),
}


def nest(depth: int) -> dict:
    config: dict = {"x": 1}
    for _ in range(depth):
        config = {"x": config}
    return config


def test_payloads_are_live(tmp_path):
    # built by Hydra, the pathlib and builtins payloads write their file (this Hydra blocks
    # os and subprocess targets itself): the refusals below are what stops them
    for kind in ("pathlib", "builtins"):
        hydra.utils.instantiate(payloads(tmp_path / "live")[kind])
        assert (tmp_path / "live").exists(), kind
        (tmp_path / "live").unlink()
    path, marker = crafted({"state_dict": {}, "frame": {}}, tmp_path, CASES["pickled-object"])
    torch.load(path, weights_only=False)
    assert marker.exists()


def commands() -> dict[str, callable]:
    from frame.cli import inpaint, sample, score

    return {"frame-sample": sample.main, "frame-score": score.main, "frame-inpaint": inpaint.main}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_checkpoint_is_refused_everywhere(good, images, tmp_path, capsys, case):
    path, marker = crafted(good, tmp_path, CASES[case])
    with pytest.raises(CheckpointError, match="crafted.ckpt"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    outs = {"frame-sample": tmp_path / "out.png", "frame-score": tmp_path / "out.csv", "frame-inpaint": tmp_path / "out"}
    argv = {
        "frame-sample": ["--ckpt", str(path), "--out", str(outs["frame-sample"]), "--n", "1", "--device", "cpu"],
        "frame-score": ["--ckpt", str(path), "--input", str(images), "--out", str(outs["frame-score"]), "--device", "cpu"],
        "frame-inpaint": ["--ckpt", str(path), "--input", str(images), "--mask-size", "4",
                          "--out", str(outs["frame-inpaint"]), "--device", "cpu"],
    }
    for name, main in commands().items():
        capsys.readouterr()
        assert main(argv[name]) == 2, name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "crafted.ckpt" in err, (name, err)
        assert not outs[name].exists(), name
    with pytest.raises(CheckpointError, match="crafted.ckpt"):  # train.py's resume, before Lightning loads it
        train(make_cfg(tmp_path / "run", *TINY, f"ckpt_path={path}"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not marker.exists()


def test_train_py_refuses_a_crafted_checkpoint_in_one_line(good, tmp_path):
    # the exit status and the one line of train.py itself; every case's refusal by the same
    # train() is checked in this process above (test_crafted_checkpoint_is_refused_everywhere)
    path, marker = crafted(good, tmp_path, CASES["pathlib-nested"])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=fast", "logger=csv", *TINY, f"ckpt_path={path}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("train.py: error: ") and str(path) in error, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
