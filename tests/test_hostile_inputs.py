"""Hostile and faulty inputs as a user's machine meets them: paths that look like config, outputs
planted as links, small files that would take gigabytes, NaN in a checkpoint, two runs in one
folder, and errors that must be one line (exit 2) naming the key, flag or file.

The memory cases run the command in a child process under an address-space limit (so that a
failure cannot take the machine's memory) and bound the child's peak resident memory, read
with ``os.wait4``.
"""

from __future__ import annotations

import base64
import copy
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from frame.cli import eval as frame_eval
from frame.cli import inpaint, pursuit, report, sample, score
from frame.run import train
from frame.run.checkpoints import CheckpointError, load_model
from tests.test_training import make_cfg

ROOT = Path(__file__).resolve().parents[1]
TINY = ("model=stationary", "data=texture", "data.image_size=16", "model.energy.extractor.layers=[conv1_1]")
#: the address space a child may map (torch alone maps a few GB of it without using them)
ADDRESS_SPACE = 8 << 30
#: peak resident memory a refused command stays under (importing torch and the command take ~1 GB)
PEAK = 1536 << 20


#: runs ``python -m <module> <args>`` under the address-space limit from a small process and prints
#: its exit status and peak resident kilobytes: a child forked or exec'd from the test process
#: itself starts with the test process's peak in its ``ru_maxrss`` (Linux keeps the larger)
LAUNCHER = """
import os, resource, subprocess, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
child = subprocess.Popen([sys.executable, "-m", *sys.argv[2:]], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_command(module: str, *args: str, timeout: float = 120, **env_extra: str) -> tuple[int, str, int]:
    """Runs ``python -m <module> <args>``; returns its exit status, stderr and peak resident bytes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), **env_extra}
    with subprocess.Popen([sys.executable, "-c", LAUNCHER, str(ADDRESS_SPACE), module, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(f"{module} {' '.join(args)} ran past {timeout} s") from None
    assert proc.returncode == 0 and len(out.split()) == 2, (proc.returncode, out, err[-3000:])
    status, peak = (int(word) for word in out.split())
    return status, err, peak * 1024


def one_line(err: str, *fragments: str) -> str:
    """The one line of `err` (a progress bar, redrawn with carriage returns, leaves none), holding every fragment."""
    lines = [line.split("\r")[-1].strip() for line in err.split("\n") if line.split("\r")[-1].strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of a one-step run (random filters, 16 px texture)."""
    from omegaconf import OmegaConf

    run = tmp_path_factory.mktemp("trained")
    cfg = make_cfg(run, *TINY, "trainer.max_steps=1")
    train(cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # what train.py's Hydra writes
    return run


@pytest.fixture(scope="module")
def good(trained) -> dict:
    return torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (16, 16), (120, 80, 40)).save(folder / "a.png")
    return folder


def saved(checkpoint: dict, path: Path) -> Path:
    torch.save(checkpoint, path)
    return path


def edited(good: dict, path: Path, edit) -> Path:
    checkpoint = copy.deepcopy(good)
    edit(checkpoint)
    return saved(checkpoint, path)


# -- 1. paths never pass through a config grammar ---------------------------------------------------
def test_pursuit_input_paths_are_file_names_not_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_text("attacker")
    (tmp_path / "b").write_text("victim")
    planted = tmp_path / "{_target_:shutil.copyfile,src:a,dst:b}"  # what `--input *` reaches
    planted.mkdir()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(planted / "t.png")
    odd = tmp_path / "odd, ${oc.env:HOME} 'q' [x].png"
    Image.new("RGB", (32, 32), (30, 30, 30)).save(odd)
    status = pursuit.main(["--input", str(planted), "--input", str(odd), "--out", str(tmp_path / "out"),
                           "--filters", "0", "--size", "32", "--device", "cpu"])
    assert status == 0, capsys.readouterr().err
    assert (tmp_path / "b").read_text() == "victim"
    assert Image.open(tmp_path / "out" / "bank.png").size[0] > 0


def test_bench_overrides_quote_paths_and_refuse_interpolations(tmp_path):
    from hydra import compose, initialize_config_dir

    from frame.overrides import path_override

    paths = [tmp_path / "a,b [c] {_target_:os.system}", tmp_path / "it's"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=texture", path_override("data.root", paths),
                                          path_override("paths.output_dir", tmp_path / "x=1,y")])
    assert list(cfg.data.root) == [str(p) for p in paths]
    assert cfg.paths.output_dir == str(tmp_path / "x=1,y")
    with pytest.raises(ValueError, match=r"data.root: .*\$\{oc.env:HOME\}"):
        path_override("data.root", tmp_path / "${oc.env:HOME}")


# -- 2. one way to write an output -----------------------------------------------------------------
def test_outputs_that_are_links_to_inputs_are_refused(trained, images, tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    before = ckpt.read_bytes(), (images / "a.png").read_bytes()
    symbolic = tmp_path / "scores.csv"
    symbolic.symlink_to(images / "a.png")
    hard = tmp_path / "grid.png"
    os.link(ckpt, hard)
    argv = {
        "score-symlink": (score.main, ["--ckpt", str(ckpt), "--input", str(images), "--out", str(symbolic)]),
        "score-hardlink": (score.main, ["--ckpt", str(ckpt), "--input", str(images), "--out", str(hard)]),
        "sample-hardlink": (sample.main, ["--ckpt", str(ckpt), "--out", str(hard), "--n", "1"]),
        "eval-hardlink": (frame_eval.main, ["--ckpt", str(ckpt), "--data", str(images), "--vgg-source", "random",
                                            "--out", str(hard)]),
    }
    for case, (main, args) in argv.items():
        capsys.readouterr()
        assert main([*args, "--device", "cpu"]) == 2, case
        one_line(capsys.readouterr().err, str(args[args.index("--out") + 1]))
        assert (ckpt.read_bytes(), (images / "a.png").read_bytes()) == before, case


def plant(link: Path, victim: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)


@pytest.mark.parametrize("command", ["frame-score", "frame-eval", "frame-inpaint", "frame-report", "frame-sample"])
def test_a_planted_link_is_replaced_never_written_through(trained, images, tmp_path, capsys, command):
    run = tmp_path / "run"
    run.mkdir()
    for part in (".hydra", "csv", "checkpoints"):
        os.symlink(trained / part, run / part) if part != "checkpoints" else (run / part).mkdir()
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    link, argv, main = {
        "frame-score": (out / "scores.csv", ["--ckpt", str(ckpt), "--input", str(images), "--out", str(out / "scores.csv")],
                        score.main),
        "frame-eval": (run / "checkpoints" / "last_eval.json", ["--ckpt", str(ckpt), "--data", str(images),
                                                                "--vgg-source", "random", "--no-c2st"], frame_eval.main),
        "frame-inpaint": (out / "images" / "a.png", ["--ckpt", str(ckpt), "--input", str(images), "--mask-size", "4",
                                                     "--out", str(out)], inpaint.main),
        "frame-report": (run / "report.html", [str(run)], report.main),
        "frame-sample": (out / "grid.png", ["--ckpt", str(ckpt), "--out", str(out / "grid.png"), "--n", "1"], sample.main),
    }[command]
    plant(link, victim)
    device = [] if command == "frame-report" else ["--device", "cpu"]
    assert main([*argv, *device]) == 0, capsys.readouterr().err
    assert victim.read_text() == "precious"
    assert link.is_file() and not link.is_symlink() and link.stat().st_size > 0


# -- 3. sizes checked before memory is taken --------------------------------------------------------
def refused_by_sample(path: Path, tmp_path: Path, *fragments: str) -> None:
    """frame-sample refuses the checkpoint in one line, within the memory bound, writing nothing."""
    status, err, peak = run_command("frame.cli.sample", "--ckpt", str(path), "--out", str(tmp_path / "s.png"),
                                    "--device", "cpu")
    assert status == 2
    one_line(err, *fragments)
    assert peak < PEAK, peak >> 20
    assert not (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_a_config_asking_for_more_chains_than_stored_is_refused_before_allocating(good, tmp_path):
    path = edited(good, tmp_path / "many.ckpt",
                  lambda c: c["frame"]["model_config"]["buffer"].update(n_chains=750_000))  # 2.3 GB of chains
    with pytest.raises(CheckpointError, match=r"many.ckpt: refused: its config describes buffer.chains of shape \(750000,"):
        load_model(path)
    refused_by_sample(path, tmp_path, "many.ckpt", "buffer.chains")


def test_a_compressed_checkpoint_is_refused_before_it_unpacks(good, tmp_path):
    n = 20_000  # 61 MB of chains that deflate to almost nothing
    checkpoint = copy.deepcopy(good)
    checkpoint["state_dict"]["buffer.chains"] = torch.zeros(n, *good["state_dict"]["buffer.chains"].shape[1:])
    checkpoint["frame"]["model_config"]["buffer"]["n_chains"] = n
    plain = saved(checkpoint, tmp_path / "plain.ckpt")
    packed = tmp_path / "packed.ckpt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record.filename))
    assert packed.stat().st_size < plain.stat().st_size / 20
    with pytest.raises(CheckpointError, match=r"packed.ckpt: refused: its record .* is compressed"):
        load_model(packed)
    refused_by_sample(packed, tmp_path, "packed.ckpt", "compressed")


def test_a_record_claiming_more_than_the_file_is_refused(good, tmp_path):
    path = saved(copy.deepcopy(good), tmp_path / "x.ckpt")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda r: r.file_size).filename.encode()
    at = data.find(b"PK\x01\x02")  # the central directory: each entry's sizes at +20 and +24
    while data[at + 46: at + 46 + int.from_bytes(data[at + 28: at + 30], "little")] != largest:
        at = data.find(b"PK\x01\x02", at + 4)
    data[at + 20: at + 28] = (1 << 31).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"x.ckpt: refused: its record .* claims 2147483648 bytes"):
        load_model(path)


def big_png(path: Path, side: int = 13000) -> Path:
    """A PNG of side x side pixels (below Pillow's bomb limit) in a few hundred kB."""
    Image.new("1", (side, side)).save(path)
    return path


@pytest.mark.slow
def test_an_image_past_the_pixel_budget_is_one_line_and_takes_no_memory(trained, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    big_png(folder / "huge.png")
    Image.new("RGB", (16, 16), (120, 80, 40)).save(folder / "small.png")
    # frame-score skips an unreadable image with a warning; frame-eval's --samples fail on it
    status, err, peak = run_command("frame.cli.score", "--ckpt", str(trained / "checkpoints" / "last.ckpt"),
                                    "--input", str(folder), "--out", str(tmp_path / "s.csv"), "--device", "cpu")
    assert status == 0, err[-3000:]
    one_line(err, "warning", "huge.png", "13000x13000")
    assert peak < PEAK, peak >> 20
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 2  # the header and small.png
    status, err, peak = run_command("frame.cli.eval", "--samples", str(folder), "--data", str(folder),
                                    "--vgg-source", "random", "--out", str(tmp_path / "e.json"), "--device", "cpu")
    assert status == 2
    one_line(err, "error", "huge.png", "13000x13000")
    assert peak < PEAK, peak >> 20


@pytest.mark.slow
def test_inpaint_holds_its_inputs_as_bytes(trained, tmp_path):
    # every input is read (and checked) before the sampling, then read again one at a time: what
    # stays per image is its mask as bits. 14 more 4-MP photos would take 672 MB more held as
    # float32. Blocks above 1 MB are mapped and returned when freed (glibc's default threshold
    # grows, and freed blocks then stay in the heap): the peak measures what is held, not the
    # heap's fragmentation. Both runs recover several images: the first image alone peaks
    # 100-270 MB lower than any later one (transients that overlap from the second image on), and
    # a run's peak varies by up to 100 MB from one run to the next (more on a busy machine).
    peaks = {}
    for n in (2, 16):
        folder = tmp_path / f"photos{n}"
        folder.mkdir()
        for i in range(n):
            Image.new("RGB", (2000, 2000), (30 * i, 90, 120)).save(folder / f"p{i}.png", compress_level=1)
        status, err, peaks[n] = run_command("frame.cli.inpaint", "--ckpt", str(trained / "checkpoints" / "last.ckpt"),
                                            "--input", str(folder), "--mask-size", "8", "--steps", "1", "--out",
                                            str(tmp_path / f"out{n}"), "--device", "cpu", timeout=300,
                                            MALLOC_MMAP_THRESHOLD_=str(1 << 20))
        assert status == 0, err[-3000:]
        assert Image.open(tmp_path / f"out{n}" / "images" / f"p{n - 1}.png").size == (2000, 2000)
    assert peaks[16] - peaks[2] < 300 << 20, {n: peak >> 20 for n, peak in peaks.items()}  # float32 would add 672 MB


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_yaml_aliases_in_a_run_folder_are_refused(trained, tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text((trained / ".hydra" / "config.yaml").read_text())
    (run / ".hydra" / "overrides.yaml").write_text(billion_laughs())
    assert len(billion_laughs()) < 400
    status, err, peak = run_command("frame.cli.report", str(run))
    assert status == 2
    one_line(err, "overrides.yaml", "aliases")
    assert peak < PEAK, peak >> 20
    assert not (run / "report.html").exists()


@pytest.mark.slow
def test_a_huge_image_size_in_a_run_config_is_refused(trained, tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "config.yaml").write_text(
        (trained / ".hydra" / "config.yaml").read_text().replace("image_size: 16", "image_size: 30000"))
    (run / "checkpoints" / "last.ckpt").write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    status, err, peak = run_command("frame.cli.eval", "--ckpt", str(run / "checkpoints" / "last.ckpt"),
                                    "--vgg-source", "random", "--device", "cpu")
    assert status == 2
    one_line(err, "config.yaml", "data.image_size=30000")
    assert peak < PEAK, peak >> 20


@pytest.mark.slow
def test_out_of_memory_on_the_cpu_is_one_line(trained, tmp_path):
    status, err, peak = run_command("frame.cli.sample", "--ckpt", str(trained / "checkpoints" / "last.ckpt"),
                                    "--out", str(tmp_path / "s.png"), "--init", "zeros", "--size", "200000",
                                    "--n", "1", "--device", "cpu")
    assert status == 1
    one_line(err, "out of memory")
    assert peak < PEAK, peak >> 20


# -- 4. NaN and infinity ----------------------------------------------------------------------------
def poisoned(good: dict, tmp_path: Path) -> tuple[Path, str]:
    checkpoint = copy.deepcopy(good)
    key = next(k for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and v.numel() > 1 and "chains" not in k)
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key].clone()
    checkpoint["state_dict"][key].view(-1)[0] = float("nan")
    return saved(checkpoint, tmp_path / "nan.ckpt"), key


def test_nan_in_a_checkpoint_is_refused_naming_the_tensor(good, images, tmp_path, capsys):
    path, key = poisoned(good, tmp_path)
    for main, args, out in (
        (sample.main, ["--out", str(tmp_path / "s.png")], tmp_path / "s.png"),
        (score.main, ["--input", str(images), "--out", str(tmp_path / "s.csv")], tmp_path / "s.csv"),
    ):
        capsys.readouterr()
        assert main(["--ckpt", str(path), *args, "--device", "cpu"]) == 2
        one_line(capsys.readouterr().err, "nan.ckpt", key)
        assert not out.exists()


def test_an_output_that_is_not_finite_is_not_written(good, tmp_path, capsys):
    # finite weights, but a step so large that the chains overflow to infinity
    path = edited(good, tmp_path / "wild.ckpt", lambda c: c["frame"]["model_config"]["sampler"].update(step_size=1e30))
    assert sample.main(["--ckpt", str(path), "--out", str(tmp_path / "s.png"), "--steps", "3", "--device", "cpu"]) == 2
    one_line(capsys.readouterr().err, "the sampled chains", "NaN or infinite")
    assert not (tmp_path / "s.png").exists()


# -- 5. the report embeds only the run's own PNG files ----------------------------------------------
def test_report_embeds_only_png_files_inside_the_run(trained, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    os.symlink(trained / ".hydra", run / ".hydra")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the password is hunter2" * 3)
    (run / "samples" / "step_000001.png").symlink_to(secret)
    (run / "samples" / "step_000002.png").write_bytes(b"not a png, just text" * 3)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(run / "samples" / "step_000003.png")
    assert report.main([str(run)]) == 0, capsys.readouterr().err
    page = (run / "report.html").read_text()
    assert base64.b64encode(secret.read_bytes()).decode()[:24] not in page
    assert base64.b64encode((run / "samples" / "step_000002.png").read_bytes()).decode()[:24] not in page
    assert base64.b64encode((run / "samples" / "step_000003.png").read_bytes()).decode() in page


def test_a_dollar_in_a_metric_name_does_not_kill_the_report(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text("step,train/gap_rel,train/cost_$a^{$b\n0,1.0,2.0\n1,0.5,1.5\n")
    assert report.main([str(run)]) == 0, capsys.readouterr().err
    assert '<figure id="run0-other">' in (run / "report.html").read_text()  # the metric's curve is drawn


# -- 6. a run folder is claimed before anything is written to it ------------------------------------
def run_train(*args: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "debug=fast", "logger=csv", *TINY, *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_runs_given_the_same_folder_at_once_one_refuses(tmp_path):
    import yaml

    procs = {seed: run_train(f"seed={seed}", "trainer.max_steps=2", f"hydra.run.dir={tmp_path}") for seed in (1, 2)}
    done = {seed: (proc.wait(timeout=300), proc.stderr.read()) for seed, proc in procs.items()}
    assert sorted(status for status, _ in done.values()) == [0, 2], done
    (winner,) = [seed for seed, (status, _) in done.items() if status == 0]
    (loser_err,) = [err for status, err in done.values() if status == 2]
    one_line(loser_err, f"hydra.run.dir={tmp_path} is in use by another run")
    assert yaml.safe_load((tmp_path / ".hydra" / "config.yaml").read_text())["seed"] == winner
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "step_000002.ckpt"]
    assert not (tmp_path / ".frame-run.lock").exists()  # released at the end


@pytest.mark.slow
def test_a_run_folder_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_train(f"hydra.run.dir={tmp_path / 'afile' / 'run'}")
    assert proc.wait(timeout=300) == 2
    one_line(proc.stderr.read(), f"hydra.run.dir={tmp_path / 'afile' / 'run'}")


def test_checkpoint_cleanup_leaves_a_running_writers_temporary_file(tmp_path):
    from frame.run.checkpoint_io import AtomicCheckpointIO

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        live = tmp_path / f".last.ckpt.{other.pid}.ab12cd.tmp"  # another run's write in progress
        live.write_bytes(b"half")
        dead = tmp_path / f".last.ckpt.{2**22 + 12345}.ef34gh.tmp"  # a pid no process has
        dead.write_bytes(b"half")
        AtomicCheckpointIO().save_checkpoint({"x": torch.ones(2)}, tmp_path / "last.ckpt")
        other.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.ckpt"]


# -- 7. one line naming the key, flag or file, and checks before the work ---------------------------
@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda c: c["sampler"].update(n_steps=-5), "model.sampler.n_steps"),
    (lambda c: c["buffer"].update(init="sideways"), "model.buffer.init"),
    (lambda c: c["energy"]["extractor"].update(layers=["conv9_9"]), "conv9_9"),
])
def test_an_invalid_stored_config_is_one_line(good, tmp_path, capsys, edit, fragment):
    path = edited(good, tmp_path / "bad.ckpt", lambda c: edit(c["frame"]["model_config"]))
    assert sample.main(["--ckpt", str(path), "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 2
    one_line(capsys.readouterr().err, "bad.ckpt", fragment)


@pytest.mark.parametrize(("where", "fragment"), [
    ("chains", "buffer._extra_state"),
    ("globals", "callbacks.RandomStates"),
])
def test_a_corrupt_generator_state_is_refused_on_resume(trained, tmp_path, where, fragment):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    if where == "chains":
        checkpoint["state_dict"]["buffer._extra_state"] = {"device": "cpu", "state": torch.zeros(7, dtype=torch.uint8)}
    else:
        checkpoint["callbacks"]["RandomStates"]["torch"] = torch.zeros(7, dtype=torch.uint8)
    path = saved(checkpoint, tmp_path / "corrupt.ckpt")
    with pytest.raises(CheckpointError, match=rf"corrupt.ckpt: refused: .*{fragment}"):
        train(make_cfg(tmp_path / "resumed", *TINY, "trainer.max_steps=2", f"ckpt_path={path}"))


@pytest.mark.slow
@pytest.mark.parametrize("out", ["a_folder.png", "a_file/grid.png"])
def test_sample_checks_its_output_before_sampling(trained, tmp_path, out):
    (tmp_path / "a_folder.png").mkdir()
    (tmp_path / "a_file").write_text("x")
    started = time.time()
    status, err, _ = run_command("frame.cli.sample", "--ckpt", str(trained / "checkpoints" / "last.ckpt"),
                                 "--out", str(tmp_path / out), "--steps", "1000000000", "--device", "cpu", timeout=60)
    assert status == 2 and time.time() - started < 60
    one_line(err, "--out")


def test_an_unwritable_sample_folder_fails_before_the_first_step(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match=r"callbacks.sample_grid.dirpath .*afile"):
        train(make_cfg(tmp_path / "run", *TINY, f"callbacks.sample_grid.dirpath={tmp_path / 'afile' / 'samples'}"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_eval_names_its_image_size_flag(trained, images, capsys):
    assert frame_eval.main(["--ckpt", str(trained / "checkpoints" / "last.ckpt"), "--data", str(images),
                            "--image-size", "4", "--vgg-source", "random", "--device", "cpu"]) == 2
    line = one_line(capsys.readouterr().err, "--image-size")
    assert "data.image_size" not in line


def test_julesz_names_its_image_size_flag(images, tmp_path, capsys):
    from frame.cli import julesz

    assert julesz.main(["--input", str(images), "--out", str(tmp_path / "j.png"), "--image-size", "2",
                        "--device", "cpu"]) == 2
    line = one_line(capsys.readouterr().err, "--image-size")
    assert "--size" not in line
