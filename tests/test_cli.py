"""The console scripts, run as a user runs them: subprocesses, exit status, one-line errors.

Two tiny checkpoints are trained once (train.py's config, ``debug=fast``, trained in this
process): a non-stationary model whose VGG-16 filters come from a weights file, and a grey net
learned from scratch. Both are copied away and the training folder and the weights file
deleted, so every command below works on a checkpoint alone. frame-sample, frame-score and
frame-inpaint run once each as subprocesses, with ``FRAME_CACHE``, ``HOME`` and ``TORCH_HOME``
pointing at empty folders and the network unreachable; the other cases call the same ``main``
in this process (the exit status it returns is the command's).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frame.nets.weights import random_state_dict

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("cli")

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
TIMEOUT = 600


def script(name: str) -> str:
    path = SCRIPTS / name
    if not path.is_file():
        pytest.fail(f"console script {name} is not installed in {SCRIPTS}: run `pip install -e . --no-deps`")
    return str(path)


def isolated_env(root: Path) -> dict[str, str]:
    """Empty cache, home and torch hub folders, and no network (a dead proxy, no package index)."""
    env = dict(os.environ)
    for name in ("cache", "home", "torch"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env.update(
        FRAME_CACHE=str(root / "cache"), HOME=str(root / "home"), TORCH_HOME=str(root / "torch"),
        HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9", PIP_NO_INDEX="1", WANDB_MODE="disabled",
    )
    env.pop("NO_PROXY", None), env.pop("no_proxy", None)
    return env


def train(out: Path, *overrides: str) -> Path:
    from frame.run import train as fit
    from tests.test_training import make_cfg

    fit(make_cfg(out, *overrides))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """The two checkpoints (copied away from their run), an isolated env root, and images."""
    root = tmp_path_factory.mktemp("cli")
    weights = root / "vgg_weights.pt"
    torch.save(random_state_dict(seed=1), weights)
    colour = train(root / "train_ns", "model=nonstationary", "data.image_size=32", f"vgg_source={weights}",
                   "model.energy.extractor.layers=[conv1_1]")
    grey = train(root / "train_scratch", "model=scratch", "data=faces", "data.image_size=32",
                 "model.energy.layers=[{filters:4,kernel:3,stride:2}]")
    (root / "ckpt").mkdir()
    paths = {"colour": root / "ckpt" / "colour.ckpt", "grey": root / "ckpt" / "grey.ckpt"}
    shutil.copy(colour, paths["colour"])
    shutil.copy(grey, paths["grey"])
    shutil.rmtree(root / "train_ns"), shutil.rmtree(root / "train_scratch"), weights.unlink()
    rng = np.random.default_rng(0)
    for sub in ("photos/a", "photos/b", "masks/a", "masks/b"):
        (root / sub).mkdir(parents=True)
    hole = np.zeros((40, 36), np.uint8)
    hole[10:22, 6:18] = 255
    for name in ("a/0", "a/1", "b/2"):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(root / "photos" / f"{name}.png")
        Image.fromarray(hole).save(root / "masks" / f"{name}.png")
    (root / "empty").mkdir()
    (root / "random.ckpt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {"root": root, "env": root / "env", **paths}


def run(world, *args: str) -> subprocess.CompletedProcess:
    env = isolated_env(world["env"])
    return subprocess.run([script(args[0]), *args[1:]], capture_output=True, text=True, env=env,
                          cwd=world["root"], timeout=TIMEOUT)


def run_here(world, monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    """The command's ``main`` in this process, in the world's folder: its status, stdout and stderr."""
    from frame.cli import fetch_weights, inpaint, sample, score

    main = {"frame-sample": sample.main, "frame-score": score.main, "frame-inpaint": inpaint.main,
            "frame-fetch-weights": fetch_weights.main}[args[0]]
    monkeypatch.chdir(world["root"])
    capsys.readouterr()
    status = main(list(args[1:]))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess, prog: str, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def digest(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# -- a checkpoint alone: no cache, no weight source, no network ----------------------------------
def test_a_copied_checkpoint_samples_scores_and_inpaints_without_cache_or_network(world):
    root, ckpt = world["root"], str(world["colour"])
    sampled = run(world, "frame-sample", "--ckpt", ckpt, "--out", str(root / "out" / "s.png"), "--n", "3", "--device", "cpu")
    assert sampled.returncode == 0, sampled.stderr
    with Image.open(root / "out" / "s.png") as grid:
        assert grid.format == "PNG" and grid.size[0] > 2 * 32

    scored = run(world, "frame-score", "--ckpt", ckpt, "--input", "photos/a", "--input", "photos/b/2.png",
                 "--out", str(root / "out" / "scores.csv"))
    assert scored.returncode == 0, scored.stderr
    with open(root / "out" / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == ["0.png", "1.png", "2.png"]
    assert all(np.isfinite(float(r["f"])) for r in rows)

    recovered = run(world, "frame-inpaint", "--ckpt", ckpt, "--input", "photos", "--masks", "masks",
                    "--out", str(root / "out" / "inpainted"))
    assert recovered.returncode == 0, recovered.stderr
    original = np.asarray(Image.open(root / "photos" / "a" / "0.png"))
    with Image.open(root / "out" / "inpainted" / "images" / "a" / "0.png") as image:
        result = np.asarray(image)
    observed = np.asarray(Image.open(root / "masks" / "a" / "0.png")) < 128
    assert result.shape == original.shape and (result[observed] == original[observed]).all()
    assert (root / "out" / "inpainted" / "grid.png").is_file()

    env = world["env"]
    assert not any((env / "cache").iterdir()) and not any((env / "torch").iterdir())
    assert not (env / "home" / ".cache" / "frame").exists()


def test_a_checkpoint_stores_no_path_of_the_training_machine(world):
    checkpoint = torch.load(world["colour"], map_location="cpu", weights_only=True)
    config = repr(checkpoint["frame"])
    assert str(world["root"]) not in config and "vgg_weights.pt" not in config


def test_no_part_of_a_checkpoint_holds_a_path_of_the_training_machine(world):
    checkpoint = torch.load(world["colour"], map_location="cpu", weights_only=True)
    assert str(world["root"]) not in repr({k: v for k, v in checkpoint.items() if k != "state_dict"})


# -- recovery of grey images; outputs never over inputs -----------------------------------------
def test_saved_masks_do_not_collide_with_an_input_folder_named_masks(world, monkeypatch, capsys):
    root, ckpt = world["root"], str(world["grey"])
    faces = root / "faces"
    (faces / "masks").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("f.png", "masks/f.png"):  # an input subfolder named like the saved masks' folder
        Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8)).save(faces / name)
    first = run_here(world, monkeypatch, capsys, "frame-inpaint", "--ckpt", ckpt, "--input", "faces", "--mask-size", "12", "--seed", "3",
                "--out", "grey1", "--device", "cpu")
    assert first.returncode == 0, first.stderr
    out = root / "grey1"
    assert sorted(digest(out / "images")) == ["f.png", "masks/f.png"]
    assert sorted(digest(out / "masks")) == ["f.png", "masks/f.png"]
    for name in ("f.png", "masks/f.png"):
        with Image.open(out / "images" / name) as image:
            assert image.mode == "L" and image.size == (40, 48)
        mask = np.asarray(Image.open(out / "masks" / name).convert("L"))
        assert set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 12 * 12
    # the saved masks are the ones used: the same seed with --masks gives the same images
    again = run_here(world, monkeypatch, capsys, "frame-inpaint", "--ckpt", ckpt, "--input", "faces", "--masks", "grey1/masks", "--seed", "3",
                "--out", "grey2", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert digest(root / "grey2" / "images") == digest(out / "images")


@pytest.mark.parametrize("out, flag", [("masks", "--masks"), ("photos", "--input"), ("photos/recovered", "--input")])
def test_inpaint_refuses_an_out_folder_that_is_or_lies_in_an_input(world, monkeypatch, capsys, out, flag):
    root = world["root"]
    before = digest(root / "masks"), digest(root / "photos")
    result = run_here(world, monkeypatch, capsys, "frame-inpaint", "--ckpt", str(world["colour"]), "--input", "photos", "--masks", "masks",
                 "--out", out)
    assert_one_line_error(result, "frame-inpaint", f"--out {out}", flag)
    assert (digest(root / "masks"), digest(root / "photos")) == before


# -- bad input: one line, exit status 2 -----------------------------------------------------------
@pytest.mark.parametrize("command, args, fragments", [
    ("frame-sample", ["--ckpt", "missing.ckpt"], ["missing.ckpt"]),
    ("frame-sample", ["--ckpt", "random.ckpt"], ["random.ckpt", "not a torch checkpoint"]),
    ("frame-sample", ["--ckpt", "ckpt/colour.ckpt", "--n", "0"], ["--n", "'0'"]),
    ("frame-score", ["--ckpt", "ckpt/colour.ckpt", "--input", "empty"], ["empty"]),
    ("frame-inpaint", ["--ckpt", "ckpt/colour.ckpt", "--input", "photos", "--mask-size", "4", "--out", "o", "--step-size", "0"],
     ["--step-size", "'0'"]),
    ("frame-inpaint", ["--ckpt", "ckpt/colour.ckpt", "--input", "photos", "--mask-size", "4", "--out", "o", "--start", "exemplars"],
     ["exemplars", "--bank"]),
    ("frame-inpaint", ["--ckpt", "ckpt/colour.ckpt", "--input", "photos", "--mask-size", "4", "--out", "o", "--start", "exemplars",
                       "--bank", "nowhere"],
     ["nowhere"]),
    ("frame-fetch-weights", ["--no-such-flag"], ["--no-such-flag"]),
])
def test_bad_input_is_one_line_and_exit_status_2(world, monkeypatch, capsys, command, args, fragments):
    line = assert_one_line_error(run_here(world, monkeypatch, capsys, command, *args), command, *fragments)
    assert "weights_only" not in line


def test_help_shows_the_defaults_and_fetch_weights_honours_frame_cache(world):
    result = run(world, "frame-fetch-weights", "--help")
    assert result.returncode == 0, result.stderr
    assert str(world["env"] / "cache") in "".join(result.stdout.split())  # FRAME_CACHE beats ~/.cache/frame
    from frame.cli import inpaint, sample, score

    for module, default in ((sample, "(default: 16)"), (score, "(default: scores.csv)"), (inpaint, "(default: 1)")):
        text = " ".join(module.parser().format_help().split())
        assert default in text and "(default: auto)" in text and "--debug" in text
