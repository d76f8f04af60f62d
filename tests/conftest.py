"""Shared fixtures: a tiny frozen filter bank with the extractor interface, and one small run
trained as a user trains it, for fast tests."""

from __future__ import annotations

import os
from pathlib import Path

# One thread per process unless the caller chose: the tests' tensors are tiny, and a second
# thread mostly waits (on a busy machine it spins); the commands the tests start inherit it.
# Set before torch loads so that its thread pool starts with it.
ONE_THREAD = "OMP_NUM_THREADS" not in os.environ
if ONE_THREAD:
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from frame.input_space import InputSpace  # noqa: E402

if ONE_THREAD:
    torch.set_num_threads(1)  # torch may have loaded before this file (a plugin)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep ``xdist_group`` tests on one worker under pytest 9: pytest-xdist (``--dist loadgroup``) tags a
    grouped test by writing ``item._nodeid``, which pytest 9 no longer reads (the id lives in ``item._id``),
    without this each test of a group goes to any worker and builds the group's shared run again. Copy the tag over;
    a no-op where pytest reads ``_nodeid`` itself. Under xdist, the ``slow`` tests are put first (below)."""
    for item in items:
        tagged = item.__dict__.get("_nodeid")
        if tagged and tagged != item.nodeid and hasattr(item, "_id"):
            item._id = type(item._id).parse(tagged)
    if hasattr(config, "workerinput"):
        # a pytest-xdist worker: the workers take ungrouped tests in this order (after the groups), so the
        # ``slow`` ones start first and none is left running alone at the end while the other cores idle
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")
#: the default config's callbacks.eval_metrics (kind auto, ...), every step, judged by random weights
EVAL_EVERY_STEP = (
    "++callbacks.eval_metrics={_target_:frame.callbacks.EvalMetrics,every_n_steps:1,kind:auto,n_samples:64,"
    "max_reference:200,source:random,min_size:32}"
)
#: the overrides of the shared run (``small_run``) after ``debug=fast``
SMALL_RUN = ("logger=csv", "model.buffer.n_chains=6", "model.energy.extractor.layers=[conv1_1]", "model.energy.net_size=null",
             EVAL_EVERY_STEP)


class IdentitySpace(InputSpace):
    """Chains live in the images' own space, [0, 1] RGB."""

    def to_input(self, images: Tensor) -> Tensor:
        return images.expand(-1, 3, -1, -1)

    def to_images(self, x: Tensor) -> Tensor:
        return x

    def bounds(self, device=None, dtype=None):
        return torch.zeros(1, 3, 1, 1, device=device, dtype=dtype), torch.ones(1, 3, 1, 1, device=device, dtype=dtype)


class TinyExtractor(nn.Module):
    """Two frozen conv+ReLU layers, 'a' (stride 1) and 'b' (stride 2), seeded."""

    def __init__(self, layers=("a", "b"), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        for conv in (self.conv_a, self.conv_b):
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.5
            conv.bias.data = torch.randn(conv.bias.shape, generator=g) * 0.1
        self.requires_grad_(False)
        self.layers = tuple(layers)
        self.input_space = IdentitySpace()

    def channels(self, layer: str) -> int:
        return {"a": 4, "b": 5}[layer]

    def check_image_size(self, size: int, key: str) -> None:
        if size < 2:
            raise ValueError(f"{key}={size} is too small")

    def feature_shape(self, layer: str, h: int, w: int):
        return (4, h, w) if layer == "a" else (5, (h + 1) // 2, (w + 1) // 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        a = torch.relu(self.conv_a(x))
        b = torch.relu(self.conv_b(a))
        return {k: v for k, v in (("a", a), ("b", b)) if k in self.layers}


@pytest.fixture
def tiny_extractor() -> TinyExtractor:
    return TinyExtractor()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """The folder of a run of ``frame.train`` (``frame-train debug=fast`` in a subprocess, as a
    user runs it: random VGG-16 conv1_1, 32 px faces, 3 steps) with 6 chains and the eval
    callback on every step, trained once. Shared by the Python API, frame-eval and frame-report
    tests: they read it, and write into it only frame-report's default ``report.html``."""
    import frame

    return frame.train(["debug=fast", *SMALL_RUN, f"paths.log_dir={tmp_path_factory.mktemp('small_run')}"])
