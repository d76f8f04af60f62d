"""Stationary models with circular padding synthesize textures that tile without seams."""

from __future__ import annotations

import pytest
import torch

from frame.run import train
from frame.run.checkpoints import load_model
from tests.test_training import make_cfg


def seam_ratio(images: torch.Tensor) -> float:
    """Pixel differences across the borders of a 2x2 tiling over those inside the image."""
    seam = ((images[..., :, -1] - images[..., :, 0]).abs().mean() + (images[..., -1, :] - images[..., 0, :]).abs().mean())
    inside = ((images[..., :, 1:] - images[..., :, :-1]).abs().mean() + (images[..., 1:, :] - images[..., :-1, :]).abs().mean())
    return float(seam / inside)


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_a_circular_texture_tiles(tmp_path, padding):
    train(make_cfg(
        tmp_path, "model=stationary", "data=texture", "data.image_size=32", "model.canvas_size=32",
        "model.energy.extractor.layers=[conv1_2,conv2_2]", f"model.energy.extractor.padding={padding}",
        "model.sampler.n_steps=10", "model.sampler.precision=fp32", "model.buffer.n_chains=2",
        "model.optimizer.lr=0.1", "trainer.max_steps=30", "data.steps_per_epoch=30",
        "callbacks.model_checkpoint.every_n_train_steps=30", "callbacks.sample_grid.every_n_steps=30",  # the last step's only
    ))
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert model.energy.extractor.padding == padding  # the checkpoint rebuilds the same filters
    ratio = seam_ratio(model.to_images(model.buffer.chains))
    if padding == "circular":
        assert 0.8 < ratio < 1.25, ratio  # the seams of a 2x2 tiling look like the inside
    else:
        assert not 0.8 < ratio < 1.25, ratio  # zero padding marks the borders
