"""Shared fixtures: a tiny frozen filter bank with the extractor interface (``tests/tiny.py``), and one
small run trained as a user trains it, for fast tests. Nothing here imports torch at start: pytest-xdist's
controlling process, which runs no test, loads this file too."""

from __future__ import annotations

import os
from pathlib import Path

# One thread per process unless the caller chose: the tests' tensors are tiny, and a second
# thread mostly waits (on a busy machine it spins); the commands the tests start inherit it.
# Set before torch loads so that its thread pool starts with it.
ONE_THREAD = "OMP_NUM_THREADS" not in os.environ
if ONE_THREAD:
    os.environ["OMP_NUM_THREADS"] = "1"

import sys  # noqa: E402

import pytest  # noqa: E402

if ONE_THREAD and "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)  # torch loaded before this file (a plugin)
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
#: the default config's callbacks.eval_metrics (kind auto, ...), every step, judged by random weights; without the
#: two-sample classifier after the last step, which no reader of the shared run looks at (tests/test_eval.py checks its rows)
EVAL_EVERY_STEP = (
    "++callbacks.eval_metrics={_target_:frame.callbacks.EvalMetrics,every_n_steps:1,kind:auto,n_samples:64,"
    "max_reference:200,source:random,min_size:32,c2st_at_end:false}"
)
#: the overrides of the shared run (``small_run``) after ``debug=fast``
SMALL_RUN = ("logger=csv", "model.buffer.n_chains=6", "model.energy.extractor.layers=[conv1_1]", "model.energy.net_size=null",
             EVAL_EVERY_STEP)


@pytest.fixture
def tiny_extractor():
    from tests.tiny import TinyExtractor

    return TinyExtractor()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """The folder of a run of ``frame.train`` (``frame-train debug=fast`` in a subprocess, as a
    user runs it: random VGG-16 conv1_1, 32 px faces, 3 steps) with 6 chains and the eval
    callback on every step, trained once. Shared by the Python API, frame-eval and frame-report
    tests: they read it, and write into it only frame-report's default ``report.html``."""
    import frame

    return frame.train(["debug=fast", *SMALL_RUN, f"paths.log_dir={tmp_path_factory.mktemp('small_run')}"])
