"""Cold starts of the face net's chains (Section 9): thumbnails of training images, paired or not."""

import pytest
import torch

from frame.buffer import ChainBuffer
from frame.input_space import PixelSpace


def blocky(n: int, side: int = 16, grid: int = 4) -> torch.Tensor:
    """Grey images constant on each of grid x grid blocks, all levels different."""
    levels = torch.rand(n, 1, grid, grid)
    return torch.nn.functional.interpolate(levels, scale_factor=side // grid, mode="nearest").expand(-1, 3, -1, -1)


def test_grid_start_keeps_each_images_block_means_and_grid_one_is_flat():
    images = blocky(5)
    space = PixelSpace(channels=1, reference_mean="grey")
    buffer = ChainBuffer(5, (1, 16, 16), init="image_mean", grid=4, paired=True)
    buffer.refresh(space.to_input(images), space)
    pixels = space.to_images(buffer.chains)[:, :1]
    # paired: chain i starts from image i; bilinear upsampling of the 4x4 means keeps each
    # block's level at the block's centre and its mean over the block's inner 2x2 pixels
    centres = pixels[..., 7:9, 7:9].mean(dim=(-2, -1))
    torch.testing.assert_close(centres, images[:, :1, 7:9, 7:9].mean(dim=(-2, -1)), atol=0.05, rtol=0)
    torch.testing.assert_close(pixels.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
    assert pixels.std(dim=(-2, -1)).min() > 0.01  # not flat: the lighting of each image survives

    flat = ChainBuffer(5, (1, 16, 16), init="image_mean", paired=True)
    flat.refresh(space.to_input(images), space)
    flat_pixels = space.to_images(flat.chains)[:, :1]
    assert flat_pixels.std(dim=(-2, -1)).max() < 1e-5
    torch.testing.assert_close(flat_pixels.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)


def test_unpaired_starts_draw_images_at_random():
    images = blocky(64)
    space = PixelSpace(channels=1, reference_mean="grey")
    buffer = ChainBuffer(64, (1, 16, 16), init="image_mean")
    buffer.refresh(space.to_input(images), space)
    means = space.to_images(buffer.chains).mean(dim=(1, 2, 3))
    assert not torch.allclose(means, images.mean(dim=(1, 2, 3)), atol=1e-5)  # 64 draws with replacement: not the identity


def test_grid_must_fit_the_canvas():
    with pytest.raises(ValueError, match="model.buffer.grid"):
        ChainBuffer(2, (1, 8, 8), init="image_mean", grid=9)


def test_paired_starts_refuse_a_batch_of_another_size():
    images = blocky(6)
    space = PixelSpace(channels=1, reference_mean="grey")
    buffer = ChainBuffer(4, (1, 16, 16), init="image_mean", paired=True)
    with pytest.raises(ValueError, match=r"model.buffer.paired.*n_chains \(4\).*batch size \(6\)"):
        buffer.refresh(space.to_input(images), space)


def test_paired_reinit_restarts_each_chain_from_its_own_image():
    images = blocky(8)
    space = PixelSpace(channels=1, reference_mean="grey")
    buffer = ChainBuffer(8, (1, 16, 16), init="image_mean", reinit_fraction=0.5, paired=True)
    observed = space.to_input(images)
    buffer.refresh(observed, space)
    buffer.update(torch.full_like(buffer.chains, 1e3))  # moved far from every start
    buffer.refresh(observed, space)
    means = space.to_images(buffer.chains)[:, :1].mean(dim=(1, 2, 3))
    restarted = (buffer.chains[:, 0, 0, 0] != 1e3).nonzero().flatten()
    assert len(restarted) == 4
    torch.testing.assert_close(means[restarted], images[restarted, :1].mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)


def test_first_unpaired_starts_draw_from_all_images_not_the_batch():
    """A process's batch is its shard of the images: the first starts come from all of them, so two
    processes start where one does."""
    images = blocky(8)
    space = PixelSpace(channels=1, reference_mean="grey")
    whole, shard = ChainBuffer(6, (1, 16, 16), init="image_mean"), ChainBuffer(6, (1, 16, 16), init="image_mean")
    whole.refresh(space.to_input(images), space)
    shard.setup(images, world_size=2)
    shard.refresh(space.to_input(images[:4]), space)  # its batch: half of the images
    torch.testing.assert_close(shard.chains, whole.chains)
