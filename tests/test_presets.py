"""Every paper preset (`experiment=...`) composes, builds what its config says, and runs a step."""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from frame.buffer import ChainBuffer
from frame.run import build_model, train
from frame.run.checkpoints import load_model
from tests.conftest import CONF_DIR
from tests.test_training import make_cfg

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
ENERGIES = {"nonstationary": "NonStationaryEnergy", "stationary": "StationaryEnergy",
            "gconvnet": "GConvNetEnergy", "scratch": "ScratchEnergy", "top_layer": "TopLayerEnergy"}


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=False)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_every_preset_is_tested():
    assert len(PRESETS) >= 9 and "fig6_textures" in PRESETS and "scratch_faces" in PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_runs_one_step(preset, tmp_path, image_folder):
    data = compose_train(f"experiment={preset}").data
    root = [] if data.root or data.embedded else [f"data.root={image_folder}"]
    # debug=fast, and the filters at the images' own size as in every tiny run (make_cfg; the default's upsampling
    # runs end to end in test_training)
    cfg = make_cfg(tmp_path, f"experiment={preset}", "trainer.max_steps=1", "model.sampler.n_steps=1", *root)
    if cfg.data.get("batch_size"):  # one chain per image of the minibatch
        cfg.data.batch_size = cfg.model.buffer.n_chains
    metrics = train(cfg)
    assert np.isfinite(metrics["train/gap_rel"])
    restored = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert type(restored.energy).__name__ == cfg.model.energy._target_.rsplit(".", 1)[-1]


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("gconvnet_")])
def test_presets_on_research_data_ask_for_a_root(preset):
    cfg = compose_train(f"experiment={preset}")
    assert cfg.data.root is None and cfg.data.embedded is None  # no default depends on ../shared
    with pytest.raises(Exception, match="Give data.root"):
        hydra.utils.instantiate(cfg.data)


@pytest.mark.parametrize("model", sorted(ENERGIES))
def test_model_config_mirrors_the_objects_it_builds(model):
    cfg = compose_train(f"model={model}", "vgg_source=random", "data.grayscale=false")
    built = build_model(cfg.model)
    assert type(built.energy).__name__ == ENERGIES[model] == cfg.model.energy._target_.rsplit(".", 1)[-1]
    assert built.sampler.n_steps == cfg.model.sampler.n_steps
    assert built.buffer.n_chains == cfg.model.buffer.n_chains and built.buffer.init == cfg.model.buffer.init
    # every argument of the buffer is a key of its config (settable without Hydra's "+")
    buffer_args = set(inspect.signature(ChainBuffer).parameters) - {"shape"}
    assert buffer_args <= set(cfg.model.buffer) and built.buffer.grid == cfg.model.buffer.grid
    assert type(built.configure_optimizers() if cfg.model.scheduler is None else built.configure_optimizers()["optimizer"]
                ).__name__ == cfg.model.optimizer._target_.rsplit(".", 1)[-1]
    # the chains take the input space's channels: grey for the grey face net
    assert built.buffer.chains.shape[1] == built.input_space.channels == (1 if model == "scratch" else 3)
    # the stored config holds no path of this machine and reads no weight source when loaded
    stored = str(built.model_config)
    assert "cache_dir" not in stored and str(Path.home()) not in stored
