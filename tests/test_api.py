"""The Python API (``import frame``): a tiny run trained by ``frame.train`` (conftest's
``small_run``), the README's example
executed on its checkpoint, and ``sample`` / ``score`` / ``inpaint`` / ``evaluate`` checked
against the library functions the commands use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import frame
from frame.scoring import score_images

#: with parallel workers (pytest-xdist), the tests of one trained run share a worker
pytestmark = pytest.mark.xdist_group("small_run")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["debug=fast", "logger=csv", "model=nonstationary", "data.image_size=32", "vgg_source=random",
        "model.energy.extractor.layers=[conv1_1]", "model.energy.net_size=null"]


def readme_example() -> str:
    """The first ```python block after the README's "## Python API" heading."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Python API")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture(scope="module")
def run(small_run) -> Path:
    """conftest's run of ``frame.train``: 32 px, random VGG-16 conv1_1, 6 chains."""
    return small_run


def test_import_frame_does_not_import_torch():
    code = "import sys, frame; assert 'torch' not in sys.modules; frame.load; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow  # a tiny run (conftest's small_run, shared with the frame-eval and frame-report tests)
def test_train_returns_the_run_folder(run, tmp_path_factory):
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".hydra" / "config.yaml").is_file()
    assert run.parent.name == "runs" and run.parents[1].name == "train"  # paths.log_dir/train/runs/<stamp>
    # a failed run: the command's one line, naming the key (a folder it cannot make, refused before the run starts)
    blocked = tmp_path_factory.mktemp("bad") / "a_file"
    blocked.write_text("not a folder")
    with pytest.raises(RuntimeError, match=rf"error: .*hydra\.run\.dir={blocked / 'run'}"):
        frame.train([*TINY, f"hydra.run.dir={blocked / 'run'}"])


@pytest.mark.slow
@pytest.mark.real_weights
def test_readme_example_runs(run, capsys):
    code = readme_example().replace("outputs/train/runs/<run>/checkpoints/last.ckpt", str(run / "checkpoints" / "last.ckpt"))
    assert str(run) in code  # the example names the checkpoint the test substitutes
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    images, scores = scope["images"], scope["scores"]
    assert images.shape == (16, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert scores.shape == (16,) and torch.isfinite(scores).all()
    table = capsys.readouterr().out
    assert "floor (real)" in table and "ceiling" in table and re.search(r"^kid\s+\S+", table, re.M)


@pytest.mark.slow  # a tiny run (conftest's small_run, shared with the frame-eval and frame-report tests)
def test_model_methods_match_the_library(run):
    model = frame.load(run / "checkpoints" / "last.ckpt")
    assert model.image_size == 32
    images = model.sample(3, steps=2, seed=1)
    assert torch.equal(images, model.sample(3, steps=2, seed=1))  # seeded
    assert images.shape == (3, 3, 32, 32)
    assert torch.allclose(model.score(images), score_images(model.module, images))
    larger = torch.nn.functional.interpolate(images, size=(48, 64), mode="bilinear")  # cropped and resized to 32
    assert model.score(larger).shape == (3,)

    masks = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
    masks[:, :, 8:20, 8:20] = True
    recovered = model.inpaint(images, masks, steps=3)
    assert recovered.shape == images.shape
    assert torch.equal(recovered[~masks.expand(-1, 3, -1, -1)], images[~masks.expand(-1, 3, -1, -1)])  # observed kept
    assert not torch.equal(recovered, images)
    with pytest.raises(ValueError, match="masks must be"):
        model.inpaint(images, masks[:2])


@pytest.mark.slow  # a tiny run (conftest's small_run, shared with the frame-eval and frame-report tests)
def test_evaluate_takes_tensors_names_and_folders(run, tmp_path):
    model = frame.load(run / "checkpoints" / "last.ckpt")
    samples = model.sample(2, steps=1)
    texture = frame.evaluate(samples, "brick", vgg_source="random", n_crops=4)  # one exemplar: texture metrics
    assert "gram_rel" in texture and "kid" not in texture and "floor (real)" in str(texture)
    given = frame.evaluate(samples, torch.rand(1, 3, 32, 32), vgg_source="random", n_crops=4)  # a tensor as the exemplar
    assert set(given) == set(texture) and given["gram_rel"].value != texture["gram_rel"].value
    with pytest.raises(FileNotFoundError, match="nor an embedded name"):
        frame.evaluate(samples, tmp_path / "absent", vgg_source="random")
