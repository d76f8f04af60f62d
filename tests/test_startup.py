"""Commands answer --help and argument errors before they import torch, Lightning or Hydra
(``frame.cli``): the parsers need the standard library only. Times are in bench/startup.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("sample", "score", "inpaint", "eval", "report", "julesz", "pursuit", "fetch_weights", "classify", "blind", "train")
HEAVY = ("torch", "torchvision", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf", "matplotlib")

PROBE = """
import sys
from frame.cli.{name} import main
sys.argv = ["frame-{prog}", *{argv!r}]
try:
    status = main({call})
except SystemExit as done:
    status = done.code
status = 0 if status is None else status  # a console script's None is exit status 0
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("STATUS", status, "HEAVY", ",".join(heavy), file=sys.stderr)
"""


def probe(name: str, argv: list[str]) -> tuple[str, str]:
    """Runs ``frame.cli.<name>.main`` with ``argv`` in a fresh interpreter; (status, heavy modules loaded)."""
    status, heavy, _ = probe_with_stderr(name, argv)
    return status, heavy


def probe_with_stderr(name: str, argv: list[str]) -> tuple[str, str, str]:
    """``probe``, and what the command printed on stderr before the probe's own line."""
    call = "" if name == "train" else "sys.argv[1:]"  # frame-train reads sys.argv (Hydra)
    code = PROBE.format(name=name, prog=name.replace("_", "-"), argv=argv, call=call, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    *printed, line = done.stderr.strip().splitlines()
    assert line.startswith("STATUS"), done.stderr
    _, status, _, *heavy = line.split()
    return status, "".join(heavy), "\n".join(printed)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_imports_nothing_heavy(name):
    assert probe(name, ["--help"]) == ("0", "")


@pytest.mark.parametrize("name", [c for c in COMMANDS if c != "train"])
def test_a_bad_flag_imports_nothing_heavy(name):
    assert probe(name, ["--no-such-flag"]) == ("2", "")


def test_frame_sample_help_in_a_subprocess_does_not_import_torch():
    """The console script itself, as a user runs it: -X importtime lists every module loaded."""
    script = Path(sys.executable).parent / "frame-sample"
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "--ckpt" in done.stdout
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "frame.cli.sample" in loaded and "argparse" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_file_that_is_not_a_checkpoint_is_refused_before_lightning_loads(tmp_path):
    """Reading and refusing a checkpoint needs torch alone (``frame.run.checkpoints``): Lightning loads
    only to build the model of a checkpoint that passed."""
    status, heavy, err = probe_with_stderr("sample", ["--ckpt", "README.md", "--out", str(tmp_path / "s.png")])
    assert status == "2" and "README.md" in err and "not a torch checkpoint" in err, err
    assert "torch" in heavy.split(",") and "pytorch_lightning" not in heavy and "lightning_fabric" not in heavy, heavy


def test_eval_refuses_a_run_config_before_it_loads_the_checkpoint(tmp_path):
    """frame-eval checks the run's data config (the reference it will read) before it builds the model."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text("data:\n  image_size: 30000\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read before the config is checked")
    status, heavy, err = probe_with_stderr("eval", ["--ckpt", str(run / "checkpoints" / "last.ckpt")])
    assert status == "2" and "config.yaml" in err and "data.image_size=30000" in err, err
    assert "pytorch_lightning" not in heavy and "lightning_fabric" not in heavy, heavy
