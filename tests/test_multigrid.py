"""Multigrid sampling (Gao et al., CVPR 2018): one net per scale, chains sampled coarse to fine.

Checked by hand on tiny nets (2, 4 and 8 px): the observed images of each scale are the block
means of the data; a scale's chains start at the previous scale's chains, each pixel repeated
over its block; each scale's weights get exactly the gradient of its own eq. (27) loss; with a
mask every scale keeps its known pixels; and a preset run through ``train.py`` resumes and
its checkpoint samples with ``frame-sample``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image

from frame.buffer import ChainBuffer
from frame.coarse_to_fine import CoarseToFineSampler
from frame.energies import MultigridEnergy, ScratchEnergy
from frame.models import FrameModel
from frame.run.checkpoints import load_model

ROOT = Path(__file__).resolve().parents[1]
SIZES = (2, 4, 8)


def tiny_energy(reference_mean: str = "grey", upsample: str = "nearest", seed: int = 0) -> MultigridEnergy:
    torch.manual_seed(seed)
    nets = [
        ScratchEnergy(layers=[{"filters": 3, "kernel": 3, "stride": 1}], image_size=size, init_std=0.05,
                      reference_mean=reference_mean)
        for size in SIZES
    ]
    return MultigridEnergy(nets, upsample=upsample)


def tiny_model(n_chains: int = 3, n_steps: int = 2, **energy_kwargs) -> FrameModel:
    energy = tiny_energy(**energy_kwargs)
    sampler = CoarseToFineSampler(step_size=0.3, n_steps=n_steps, precision="fp32", channels_last=False)
    buffer = partial(ChainBuffer, n_chains=n_chains, init="image_mean", reinit_fraction=1.0, paired=True)
    return FrameModel(energy, sampler, buffer=buffer, image_size=SIZES[-1])


def block_means(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 1, H, W] -> [B, 1, size, size], by hand."""
    b, _, h, _ = pixels.shape
    k = h // size
    return pixels.reshape(b, 1, size, k, size, k).mean(dim=(3, 5))


class RecordingSampler(CoarseToFineSampler):
    """The coarse-to-fine sampler, remembering every start and mask a scale is given."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def langevin(self, energy, x, mask=None, **kwargs):
        self.calls.append((x.detach().clone(), None if mask is None else mask.clone()))
        return super().langevin(energy, x, mask=mask, **kwargs)


@pytest.mark.parametrize("reference_mean", ["grey", "data"])
def test_observed_images_of_each_scale_are_the_block_means(reference_mean):
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    model = tiny_model(reference_mean=reference_mean)
    model.input_space.fit(images)
    model.energy.fit(model.to_input(images))
    levels = model.energy.pyramid(model.to_input(images))
    assert [tuple(level.shape[-2:]) for level in levels] == [(s, s) for s in SIZES]
    for net, level in zip(model.energy.scales, levels):
        pixels = level + net.input_space.mean  # back to 0-255 grey levels
        torch.testing.assert_close(pixels, 255 * block_means(images, net.image_size), atol=1e-3, rtol=0)
    if reference_mean == "data":  # each scale's q is centred on the block means of the mean face
        for net in model.energy.scales:
            torch.testing.assert_close(net.input_space.mean, 255 * block_means(images.mean(0, keepdim=True), net.image_size),
                                       atol=1e-3, rtol=0)


def test_chains_start_at_the_image_mean_and_each_scale_starts_at_the_last_enlarged():
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    model = tiny_model()
    model.sampler = RecordingSampler(step_size=0.3, n_steps=2, precision="fp32", channels_last=False)
    observed = model.to_input(images)
    chains = model.synthesize(observed)
    assert [tuple(c.shape) for c in chains] == [(3, 1, s, s) for s in SIZES]
    starts = [x for x, _ in model.sampler.calls]
    # the coarsest start: flat at the mean of the chain's own training image (paired cold start)
    grey = model.energy.scales[0].input_space.mean
    torch.testing.assert_close(starts[0] + grey, 255 * images.mean(dim=(2, 3), keepdim=True).expand(3, 1, 2, 2),
                               atol=1e-3, rtol=0)
    # every finer scale starts at the coarser chains, each pixel repeated over its block
    for coarse, start, fine in zip(chains, starts[1:], SIZES[1:]):
        k = fine // coarse.shape[-1]
        torch.testing.assert_close(start, coarse.repeat_interleave(k, -1).repeat_interleave(k, -2), atol=1e-4, rtol=0)
    assert not torch.equal(chains[1], starts[1])  # and then moves
    assert torch.equal(model.buffer.chains, chains[-1])  # the buffer keeps the finest chains


def test_bilinear_enlarging_interpolates_between_block_centres():
    energy = tiny_energy(upsample="bilinear")
    coarse = (10.0 * torch.arange(4.0)).expand(1, 1, 4, 4)  # a ramp, 10 grey levels a coarse pixel
    fine = energy.enlarge(coarse, 2)[0, 0, 0]
    # fine pixel i sits at coarse position (i + 0.5) / 2 - 0.5: 5 i - 2.5, clamped at the borders
    torch.testing.assert_close(fine, torch.tensor([0.0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30.0]), atol=1e-3, rtol=0)
    nearest = tiny_energy().enlarge(coarse, 2)[0, 0, 0]
    torch.testing.assert_close(nearest, torch.tensor([0.0, 0, 10, 10, 20, 20, 30, 30]), atol=1e-3, rtol=0)


def test_each_scale_gets_the_gradient_of_its_own_contrastive_loss_only():
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    model = tiny_model()
    observed = model.to_input(images)
    chains = model.synthesize(observed)
    loss = model.energy.contrastive_loss(model.features(observed), model.features(chains))
    loss.backward()
    levels = model.energy.pyramid(observed)
    for net, obs, syn in zip(model.energy.scales, levels, chains):
        params = [p for p in net.parameters() if p.requires_grad]
        own = net.contrastive_loss(net.features(obs), net.features(syn))  # eq. (27) of this scale alone
        expected = torch.autograd.grad(own, params)
        for p, g in zip(params, expected):
            torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)
    # and a change of one scale's synthesized images leaves the other scales' gradients alone
    moved = [chains[0] + 5.0, chains[1], chains[2]]
    model.energy.zero_grad()
    model.energy.contrastive_loss(model.features(observed), model.features(moved)).backward()
    for net, obs, syn in zip(model.energy.scales[1:], levels[1:], chains[1:]):
        params = [p for p in net.parameters() if p.requires_grad]
        expected = torch.autograd.grad(net.contrastive_loss(net.features(obs), net.features(syn)), params)
        for p, g in zip(params, expected):
            torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_masked_sampling_keeps_the_known_pixels_of_every_scale():
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    missing = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    missing[:, :, 2:4, 4:8] = True  # 8 pixels: 2 of the 4 px pixels, 1 of the 2 px pixels
    model = tiny_model(n_steps=3)
    model.sampler = RecordingSampler(step_size=0.3, n_steps=3, precision="fp32", channels_last=False)
    start = model.to_input(images)
    chains = model.sampler.synthesize(model.energy, start, mask=missing, generator=torch.Generator().manual_seed(0))
    known = model.energy.pyramid(start)
    masks = [m for _, m in model.sampler.calls]
    assert [int(m[0].sum()) for m in masks] == [1, 2, 8]
    for chain, level, mask in zip(chains, known, masks):
        assert torch.equal(chain[~mask.expand_as(chain)], level[~mask.expand_as(level)])
        assert (chain != level)[mask.expand_as(chain)].all()  # the holes move
    # the finest known pixels are the image's own, exactly; recovery's inpaint goes through the same path
    from frame.recovery.inpaint import inpaint

    recovered = inpaint(model, images.expand(-1, 3, -1, -1), missing, generator=torch.Generator().manual_seed(0))
    assert torch.equal(recovered[~missing.expand(-1, 3, -1, -1)], images.expand(-1, 3, -1, -1)[~missing.expand(-1, 3, -1, -1)])


def test_scales_must_grow_and_divide():
    nets = [ScratchEnergy(layers=[{"filters": 2, "kernel": 3}], image_size=s) for s in (4, 6)]
    with pytest.raises(ValueError, match="model.energy.scales"):
        MultigridEnergy(nets)
    with pytest.raises(ValueError, match="data.image_size"):
        FrameModel(tiny_energy(), CoarseToFineSampler(), image_size=16)


def test_multigrid_trains_resumes_and_samples_coarse_to_fine(tmp_path):
    """train.py's ``model=multigrid data=faces`` with the multigrid authors' reference (sigma 50,
    clamped chains, one chain per face; tiny: 32 px, 2 chains, 2 steps), trained in this process,
    resumed for one more iteration, then frame-sample's ``main`` on its checkpoint."""
    from frame.cli.sample import main as frame_sample
    from frame.run import train
    from tests.test_training import make_cfg

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((torch.rand(40, 40, generator=torch.Generator().manual_seed(i)) * 255).byte().numpy()).save(folder / f"{i}.png")
    common = ["model=multigrid", "data=faces", "model.sampler.sigma=50", "model.sampler.clamp=true", "model.buffer.paired=true",
              f"data.root={folder}", "data.batch_size=2"]
    train(make_cfg(tmp_path / "run", *common, "trainer.max_steps=2"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    train(make_cfg(tmp_path / "run", *common, "trainer.max_steps=3", f"ckpt_path={ckpt}"))
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 3
    model = load_model(ckpt)
    assert isinstance(model.sampler, CoarseToFineSampler) and model.energy.sizes == [4, 16, 32]
    out = tmp_path / "samples.png"
    assert frame_sample(["--ckpt", str(ckpt), "--out", str(out), "--n", "4", "--steps", "2", "--init", "flat"]) == 0
    assert Image.open(out).size[0] > 32


def test_chain_buffer_of_the_model_is_the_finest_canvas():
    model = tiny_model(n_chains=4)
    assert isinstance(model.buffer, ChainBuffer) and tuple(model.buffer.chains.shape) == (4, 1, 8, 8)


def tiny_scales_cfg(tmp_path, *overrides):
    from tests.test_training import make_cfg

    cfg = make_cfg(tmp_path, "model=multigrid", "data=faces", "data.image_size=16", "data.batch_size=2", "model.buffer.paired=true",
                   "model.sampler.sigma=50", "model.sampler.clamp=true", "callbacks.sample_grid=null", *overrides)
    cfg.model.energy.scales = [
        {"_target_": "frame.energies.ScratchEnergy", "image_size": size, "channels": 1, "layers": [{"filters": 4, "kernel": 3, "stride": 1}],
         "readout": "dense", "init_std": 0.01, "reference_mean": "grey", "activation": "relu"}
        for size in (4, 8, 16)
    ]
    return cfg


def test_a_multigrid_model_checkpoint_of_the_earlier_class_loads_and_resumes(tmp_path):
    """format3_multigrid.ckpt holds a ``MultigridModel`` (the class that sampled coarse to fine
    before the sampler did): it rebuilds as a FrameModel with a CoarseToFineSampler, every tensor
    as saved, and a run resumes from it."""
    from frame.run import train
    from tests.test_training import read_metric

    path = ROOT / "tests" / "data" / "format3_multigrid.ckpt"
    raw = torch.load(path, weights_only=True)
    assert raw["frame"]["format"] == 3 and raw["frame"]["model_config"]["_target_"] == "frame.models.MultigridModel"
    model = load_model(path)
    assert type(model) is FrameModel and isinstance(model.sampler, CoarseToFineSampler) and model.energy.sizes == [4, 8, 16]
    for key, value in raw["state_dict"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(model.state_dict()[key], value), key
    assert model.langevin(model.buffer.chains, n_steps=1).shape == (2, 1, 16, 16)
    (tmp_path / "old").mkdir()
    resumed = tmp_path / "old" / "last.ckpt"
    resumed.write_bytes(path.read_bytes())
    train(tiny_scales_cfg(tmp_path / "run", "trainer.max_steps=3", f"ckpt_path={resumed}"))
    assert len(read_metric(tmp_path / "run", "train/gap_rel")) == 1  # steps 1-2 came from the checkpoint
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["frame"]["model_config"]["sampler"]["_target_"] \
        == "frame.coarse_to_fine.CoarseToFineSampler"
