"""bench/gallery.py on a tiny run given with --runs: one PNG per preset that opens, a results
table naming each, and the size budget kept."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.bench_scripts import bench_module


@pytest.mark.slow
def test_gallery_from_a_tiny_run(tmp_path):
    from omegaconf import OmegaConf

    from frame.run import train
    from tests.test_training import make_cfg

    run = tmp_path / "run"  # a debug=fast run of train.py's config, trained in this process
    cfg = make_cfg(run, "model=stationary", "data=texture", "data.image_size=32", "model.energy.extractor.layers=[conv1_1]",
                   "model.energy.extractor.padding=circular")
    train(cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # what train.py's Hydra writes
    gallery = bench_module("gallery")
    out = tmp_path / "gallery"
    status = gallery.main(["--runs", f"brick={run}", f"tiled_texture={run}", "--only", "brick,tiled_texture", "--quick",
                           "--out", str(out), "--budget", "6000"])
    assert status == 0
    sizes = {path.name: path.stat().st_size for path in out.glob("*.png")}
    assert set(sizes) == {"brick.png", "tiled_texture.png"} and sum(sizes.values()) <= 6000
    brick, tiled = Image.open(out / "brick.png"), Image.open(out / "tiled_texture.png")
    assert brick.width > brick.height > 0  # training image beside the chains
    assert tiled.width > tiled.height  # the texture beside a 2 x 2 tiling of one chain
    table = (out / "results.md").read_text()
    assert "| [brick](brick.png) | Fig. 6" in table and "(given run)" in table
    assert "gram_rel" in table and "floor" in table and "ceiling" in table
    assert "![tiled_texture](tiled_texture.png)" in table


def test_unknown_preset_is_one_error(capsys):
    with pytest.raises(SystemExit) as done:
        bench_module("gallery").main(["--only", "nonesuch"])
    assert done.value.code == 2 and "unknown preset(s) nonesuch" in capsys.readouterr().err
