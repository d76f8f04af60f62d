"""Image recovery (Section 9, Table 2): masks, training for recovery, frame-inpaint, baselines."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from frame.buffer import ChainBuffer
from frame.cli.inpaint import MaskError
from frame.cli.inpaint import main as inpaint_main
from frame.energies import NonStationaryEnergy
from frame.models import FrameModel
from frame.recovery import BASELINES, RecoveryChains, available_baselines, exemplar_fill, masked_mae, opencv_available, recovery_of
from frame.recovery.baselines import nearest_exemplars
from frame.recovery.inpaint import inpaint
from frame.recovery.masks import RecoveryMasks, fill_missing, square_masks, start_chains
from frame.run import train
from frame.run.checkpoints import load_model
from frame.sampling import LangevinSampler
from tests.conftest import CONF_DIR
from tests.tiny import TinyExtractor


# -- masks -------------------------------------------------------------------------------------
def test_square_masks_are_squares_inside_the_image_and_seeded():
    g = torch.Generator().manual_seed(0)
    masks = square_masks(50, (20, 30), 7, generator=g)
    assert masks.shape == (50, 1, 20, 30) and masks.dtype == torch.bool
    for m in masks[:, 0]:
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        assert m.sum() == 49 and len(rows) == 7 and len(cols) == 7  # one full 7x7 square
    tops = masks[:, 0].any(2).float().argmax(1)
    assert tops.unique().numel() > 5  # placed at random
    again = square_masks(50, (20, 30), 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    centre = square_masks(1, (64, 64), 0.625, placement="center")[0, 0]  # 40/64
    assert centre[12:52, 12:52].all() and centre.sum() == 1600


def test_recovery_config_is_checked():
    with pytest.raises(ValueError, match="unknown keys"):
        RecoveryMasks.from_config({"mask_size": 4, "size": 3})
    with pytest.raises(ValueError, match="placement"):
        RecoveryMasks.from_config({"mask_size": 4, "placement": "corner"})
    with pytest.raises(ValueError, match="mask_size"):
        square_masks(1, (8, 8), 9)
    with pytest.raises(ValueError, match="start"):
        RecoveryMasks.from_config({"mask_size": 4, "start": "zeros"})
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="test_steps"):
            RecoveryMasks.from_config({"mask_size": 4, "test_steps": bad})
    for bad in (0, -0.1, True, "0.1", float("inf")):
        with pytest.raises(ValueError, match="test_step_size"):
            RecoveryMasks.from_config({"mask_size": 4, "test_step_size": bad})


def test_recovery_masks_of_several_sizes_draw_one_per_image():
    from omegaconf import OmegaConf

    masks = RecoveryMasks.from_config(OmegaConf.create({"mask_size": [4, 0.5]}))  # 4 px or half of 16
    assert masks.sizes == (4, 0.5)
    drawn = masks.sample(64, (16, 16), torch.Generator().manual_seed(0))
    areas = drawn.sum(dim=(1, 2, 3))
    assert set(areas.tolist()) == {16, 64}  # every hole is one of the two squares, and both occur
    assert 20 < (areas == 64).sum() < 44
    assert torch.equal(drawn, masks.sample(64, (16, 16), torch.Generator().manual_seed(0)))
    single = RecoveryMasks(mask_size=4).sample(8, (16, 16), torch.Generator().manual_seed(0))
    assert torch.equal(single, square_masks(8, (16, 16), 4, generator=torch.Generator().manual_seed(0)))
    for bad in ([], [4, "big"], [4, 0]):
        with pytest.raises(ValueError, match="mask_size"):
            RecoveryMasks.from_config({"mask_size": bad})


def test_fill_missing_starts_the_hole_at_the_mean_of_observed_pixels():
    x = torch.zeros(1, 3, 4, 4)
    x[:, :, :, :2] = 1.0  # left half 1, right half 0
    missing = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    missing[..., 0, 0] = missing[..., 3, 3] = True
    out = fill_missing(x, missing)
    assert torch.equal(out[~missing.expand_as(x)], x[~missing.expand_as(x)])
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 7 / 14))


def test_harmonic_start_is_the_mrf_l2_fill_in_image_space():
    ramp = torch.linspace(0, 1, 8).expand(1, 3, 8, 8).clone()  # harmonic: a linear ramp is exact
    missing = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    missing[..., 2:6, 2:6] = True
    space = SimpleNamespace(to_input=lambda im: im * 255 - 100, to_images=lambda x: (x + 100) / 255)
    x = space.to_input(ramp)
    start = start_chains(x.clone().masked_fill(missing.expand_as(x), 7.0), missing, "harmonic", space)
    assert torch.equal(start[~missing.expand_as(x)], x[~missing.expand_as(x)])
    torch.testing.assert_close(start, x, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="start"):
        start_chains(x, missing, "biharmonic")
    # grey chains (a from-scratch net's pixel space): the fill of the grey image itself
    from frame.input_space import PixelSpace
    from frame.recovery.baselines import harmonic

    space = PixelSpace(channels=1, reference_mean="data", size=8, per_pixel=True)
    grey = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    space.fit(grey)
    start = start_chains(space.to_input(grey), missing, "harmonic", space)
    expected = harmonic(grey[0].mean(0).double().numpy(), missing[0, 0].numpy())
    torch.testing.assert_close(space.to_images(start)[0, 0].double(), torch.from_numpy(expected), atol=1e-4, rtol=0)


# -- training for recovery -------------------------------------------------------------------
def tiny_model(recovery, n_chains=4, size=16, n_steps=3):
    sampler = LangevinSampler(step_size=0.3, n_steps=n_steps, precision="fp32", channels_last=False)
    model = FrameModel(
        energy=NonStationaryEnergy(TinyExtractor(), size), sampler=sampler, image_size=size,
        buffer=partial(RecoveryChains, n_chains=n_chains, **recovery) if recovery is not None else partial(ChainBuffer, n_chains=n_chains),
    )
    with torch.no_grad():
        for w in model.energy.weights.values():
            w.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


@pytest.mark.parametrize("placement", ["random", "center"])
def test_recovery_training_keeps_unmasked_pixels_of_the_training_images(placement):
    model = tiny_model({"mask_size": 6, "n_masks": 1, "placement": placement})
    observed = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    synthesized = model.synthesize(observed)
    changed = (synthesized != observed).any(1)  # [B, H, W]
    for image in changed:
        assert 0 < image.sum() <= 36  # only the 6x6 hole moved ...
        rows, cols = image.any(1).nonzero()[:, 0], image.any(0).nonzero()[:, 0]
        assert rows.max() - rows.min() < 6 and cols.max() - cols.min() < 6  # ... and it is one square
    if placement == "center":
        assert not changed[:, :5].any() and not changed[:, 11:].any()
    assert torch.equal(model.buffer.chains, synthesized)  # the grids show the recovered chains
    # the masks come from the model's own generator: a fresh model draws the same holes
    again = tiny_model({"mask_size": 6, "placement": placement}).synthesize(observed)
    assert torch.equal((again != observed).any(1), changed)


def test_recovery_training_from_the_harmonic_start_moves_only_the_hole():
    model = tiny_model({"mask_size": 6, "start": "harmonic"}, n_steps=0)
    observed = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    start = model.synthesize(observed)  # no Langevin step: the chains are the harmonic fill
    hole = (start != observed).any(1, keepdim=True)
    assert 0 < hole.sum() <= 4 * 36
    torch.testing.assert_close(start, model.to_input(start_chains(
        observed, hole, "harmonic", model.input_space)), atol=1e-4, rtol=0)


def test_recovery_training_needs_one_chain_per_training_image():
    model = tiny_model({"mask_size": 6}, n_chains=3)
    with pytest.raises(ValueError, match="n_chains"):
        model.synthesize(torch.rand(4, 3, 16, 16))


# -- conditional sampling through the inpaint path --------------------------------------------
def test_inpaint_never_changes_observed_pixels_and_all_missing_is_unconditional():
    model = tiny_model(None, n_steps=5)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    missing = square_masks(2, (16, 16), 8, generator=torch.Generator().manual_seed(0))
    out = inpaint(model, images, missing, generator=torch.Generator().manual_seed(0))
    hole = missing.expand_as(images)
    assert torch.equal(out[~hole], images[~hole])
    assert not torch.allclose(out[hole], images[hole])
    averaged = inpaint(model, images, missing, n_chains=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(averaged[~hole], images[~hole])
    # all missing: exactly the unconditional chain from the same start and noise
    everything = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    conditional = inpaint(model, images, everything, generator=torch.Generator().manual_seed(5))
    start = images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
    free = model.sampler.sample(model.energy, start, bounds=model.input_space.bounds(start.device, start.dtype), generator=torch.Generator().manual_seed(5))
    assert torch.equal(conditional, model.to_images(free))


def test_inpaint_takes_the_models_recovery_test_steps_unless_told():
    model = tiny_model({"mask_size": 6, "test_steps": 2}, n_steps=7)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    missing = square_masks(2, (16, 16), 8, generator=torch.Generator().manual_seed(0))

    def run(**kwargs):
        return inpaint(model, images, missing, generator=torch.Generator().manual_seed(0), **kwargs)

    default = run()
    assert torch.equal(default, run(n_steps=2))  # test_steps, not the training L of 7
    assert not torch.allclose(default, run(n_steps=7))
    assert not torch.equal(run(n_steps=0), default)  # --steps overrides it, 0 (the start) included
    assert model.sampler.n_steps == 7 and model.sampler.step_size == 0.3  # the sampler is left as it was
    untrained = tiny_model(None, n_steps=7)  # no recovery config: the model's L
    plain = inpaint(untrained, images, missing, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, inpaint(untrained, images, missing, n_steps=7, generator=torch.Generator().manual_seed(0)))


def test_inpaint_takes_the_models_recovery_step_size_unless_told():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    missing = square_masks(2, (16, 16), 8, generator=torch.Generator().manual_seed(0))

    def run(model, **kwargs):
        return inpaint(model, images, missing, n_steps=4, generator=torch.Generator().manual_seed(0), **kwargs)

    small = tiny_model({"mask_size": 6, "test_step_size": 0.1})
    plain = tiny_model({"mask_size": 6})
    default = run(small)
    assert torch.equal(default, run(plain, step_size=0.1))  # the model's test step size, not its sampler's 0.3
    assert not torch.allclose(default, run(plain))
    assert torch.equal(run(small, step_size=0.3), run(plain))  # step_size overrides it
    assert small.sampler.step_size == 0.3  # and the sampler keeps its training step
    with pytest.raises(ValueError, match="step size"):
        run(plain, step_size=0.0)


# -- the error measure and the baselines ------------------------------------------------------
def test_masked_mae_on_a_hand_made_pair():
    original = np.zeros((4, 4))
    recovered = original.copy()
    recovered[0, 0], recovered[0, 1], recovered[3, 3] = 0.5, -0.25, 1.0  # (3,3) is not masked
    mask = np.zeros((4, 4), bool)
    mask[0, :] = True
    assert masked_mae(recovered, original, mask) == pytest.approx((0.5 + 0.25) / 4)
    # channels and torch tensors: [3, H, W] with an [H, W] mask
    t = torch.from_numpy(np.stack([recovered] * 3))
    assert masked_mae(t, torch.zeros(3, 4, 4), torch.from_numpy(mask)) == pytest.approx(0.1875)
    with pytest.raises(ValueError, match="empty"):
        masked_mae(recovered, original, np.zeros((4, 4), bool))


def smooth_images():
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    ramp = 0.2 + 0.4 * xx + 0.2 * yy
    wave = 0.5 + 0.3 * np.sin(np.pi * xx) * np.cos(0.5 * np.pi * yy)
    mask = np.zeros((48, 48), bool)
    mask[14:34, 16:36] = True
    return ramp, wave, mask


def test_opencv_baselines_are_listed_when_cv2_is_installed():
    names = available_baselines()
    assert {"mean", "harmonic", "tv", "biharmonic"} <= set(names)
    assert ("telea" in names) == opencv_available() == ("navier_stokes" in names)


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_fills_a_hole_in_a_smooth_image(name):
    if name not in available_baselines():
        pytest.skip("opencv-python-headless is not installed")
    ramp, wave, mask = smooth_images()
    for image in (ramp, wave, np.stack([ramp, wave, 1 - ramp], axis=-1)):
        floor = masked_mae(BASELINES["mean"](image, mask), image, mask)  # ~0.05-0.09 here
        out = BASELINES[name](image, mask)
        assert out.shape == image.shape
        keep = mask if image.ndim == 2 else np.broadcast_to(mask[..., None], image.shape)
        assert np.array_equal(out[~keep], image[~keep])  # observed pixels untouched
        error = masked_mae(out, image, mask)
        if name == "mean":
            assert error < 0.15
        else:
            assert error < 0.04 and error < 0.6 * floor, error
    if name in ("harmonic", "tv", "biharmonic"):  # a linear ramp is harmonic: recovered exactly
        assert masked_mae(BASELINES[name](ramp, mask), ramp, mask) < 1e-6


def test_mean_fill_is_exact_on_a_constant_image():
    image, mask = np.full((8, 8), 0.3), np.eye(8, dtype=bool)
    assert masked_mae(BASELINES["mean"](image, mask), image, mask) < 1e-12


def test_exemplar_fill_takes_the_nearest_bank_images_shifted_to_the_ring_and_not_the_image_itself():
    ramp, wave, mask = smooth_images()
    rng = np.random.default_rng(0)
    others = rng.uniform(0, 1, (5, 48, 48))
    # the image itself (left out), the image brighter by 0.1 everywhere, and noise images
    bank = np.stack([wave, np.clip(wave + 0.1, 0, 1), *others])
    out = exemplar_fill(bank, k=1)(wave, mask)
    assert np.array_equal(out[~mask], wave[~mask])  # observed pixels untouched
    assert masked_mae(out, wave, mask) < 1e-9  # the +0.1 copy, shifted back by the ring's mean
    # k = 2 averages the shifted copy with the nearest noise image
    noise = others[np.argmin(((others[:, ~mask] - wave[~mask]) ** 2).mean(1))]
    band = np.zeros_like(mask)
    band[11:37, 13:39] = True  # the hole grown by 3 pixels
    band &= ~mask
    expected = 0.5 * (wave + noise + wave[band].mean() - noise[band].mean())
    assert np.allclose(exemplar_fill(bank, k=2)(wave, mask)[mask], np.clip(expected, 0, 1)[mask])
    # colour: per channel shifts
    colour = np.stack([wave, ramp, 1 - ramp], axis=-1)
    bank3 = np.stack([colour, np.clip(colour + [0.05, -0.05, 0.1], 0, 1), *np.stack([others] * 3, axis=-1)])
    assert masked_mae(exemplar_fill(bank3, k=1)(colour, mask), colour, mask) < 1e-9


def test_exemplar_fill_rejects_bad_banks_and_sizes():
    _, wave, mask = smooth_images()
    with pytest.raises(ValueError, match="bank"):
        exemplar_fill(np.zeros((48, 48)))
    with pytest.raises(ValueError, match="k must be"):
        exemplar_fill(np.zeros((3, 48, 48)), k=4)
    with pytest.raises(ValueError, match="holds"):
        exemplar_fill(np.zeros((3, 32, 32)), k=1)(wave, mask)


def test_nearest_exemplars_on_batches_is_the_exemplar_fill_and_leaves_the_image_out():
    ramp, wave, mask = smooth_images()
    others = np.random.default_rng(1).uniform(0, 1, (6, 48, 48))
    bank = np.stack([wave, ramp, *others])
    images = np.stack([wave, ramp])
    got = nearest_exemplars(torch.from_numpy(images)[:, None], torch.from_numpy(mask)[None, None],
                            torch.from_numpy(bank)[:, None], k=3)[:, 0].numpy()
    for image, out in zip(images, got):
        assert np.allclose(out, exemplar_fill(bank, k=3)(image, mask), atol=1e-12)
        assert np.array_equal(out[~mask], image[~mask]) and masked_mae(out, image, mask) > 0.01  # not itself
    # the image itself (after a float32 round trip) is left out even when k asks for the whole bank
    near_copy = torch.from_numpy(wave).float()[None, None] * (1 + 1e-7)
    small_bank = torch.from_numpy(np.stack([wave, np.clip(wave + 0.1, 0, 1)])).float()[:, None]
    out = nearest_exemplars(near_copy, torch.from_numpy(mask)[None, None], small_bank, k=2)
    assert masked_mae(out[0, 0].double().numpy(), wave, mask) < 1e-6  # the +0.1 copy alone, shifted back
    with pytest.raises(ValueError, match="no image but the image itself"):
        nearest_exemplars(near_copy, torch.from_numpy(mask)[None, None], small_bank[:1], k=1)


def test_exemplars_start_fills_the_hole_from_the_bank_and_needs_one():
    _, wave, mask = smooth_images()
    space = SimpleNamespace(to_input=lambda im: im * 255 - 100, to_images=lambda x: (x + 100) / 255)
    image = torch.from_numpy(wave).float().expand(1, 3, 48, 48)
    missing = torch.from_numpy(mask)[None, None]
    bank = torch.from_numpy(np.clip(wave - 0.05, 0, 1)).float().expand(2, 3, 48, 48)  # RGB bank, grey chains
    x = space.to_input(image[:, :1])
    start = start_chains(x, missing, "exemplars", space, bank)
    assert torch.equal(start[~missing], x[~missing])
    torch.testing.assert_close(space.to_images(start), space.to_images(x), atol=1e-4, rtol=0)  # shifted back
    with pytest.raises(ValueError, match="--bank"):
        start_chains(x, missing, "exemplars", space)


def test_recovery_training_from_the_exemplars_start_takes_other_training_images():
    model = tiny_model({"mask_size": 6, "start": "exemplars"}, n_steps=0)
    observed = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="--bank"):
        model.synthesize(observed)
    model.buffer.bank = observed  # what setup() takes from the data module
    start = model.synthesize(observed)  # no Langevin step: the chains are the exemplars fill
    hole = (start != observed).any(1, keepdim=True)
    assert 0 < hole.sum() <= 4 * 36
    expected = nearest_exemplars(observed, hole, observed, k=3)  # the other three, never the image itself
    torch.testing.assert_close(start, model.to_input(expected), atol=1e-4, rtol=0)
    assert masked_mae(expected[0].permute(1, 2, 0).numpy(), observed[0].permute(1, 2, 0).numpy(), hole[0, 0].numpy()) > 0.05


# -- frame-inpaint on a tiny checkpoint ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Three steps of training for recovery (debug=fast: random VGG, 32x32, 2 chains)."""
    out = tmp_path_factory.mktemp("recovery_run")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            "debug=fast", "logger=csv", f"paths.output_dir={out}", "data.batch_size=2", "model.energy.net_size=null",
            "model.sampler.precision=fp32", "model.recovery={mask_size: [12, 8], n_masks: 1, placement: random, test_step_size: 0.1}",
        ])
    train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def write_inputs(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "grey.png": rng.integers(0, 256, (32, 32), dtype=np.uint8),
        "wide.png": rng.integers(0, 256, (40, 56, 3), dtype=np.uint8),  # another size, colour
        "face.pgm": rng.integers(0, 256, (48, 42), dtype=np.uint8),
    }
    for name, array in arrays.items():
        Image.fromarray(array).save(folder / name)
    return arrays


@pytest.mark.xdist_group("tiny_checkpoint")  # one worker trains the shared checkpoint
def test_frame_inpaint_writes_same_named_outputs_keeping_observed_pixels(tiny_checkpoint, tmp_path):
    arrays = write_inputs(tmp_path / "in")
    model = load_model(tiny_checkpoint)
    recovery = recovery_of(model)  # model.recovery={...} named the chain source model.buffer
    assert recovery is not None and recovery.mask_size == (12, 8) and recovery.test_step_size == 0.1
    out = tmp_path / "out"
    inpaint_main(["--ckpt", str(tiny_checkpoint), "--input", str(tmp_path / "in"), "--out", str(out),
                  "--mask-size", "10", "--seed", "3", "--steps", "3", "--device", "cpu"])
    assert (out / "grid.png").is_file()
    first = {}
    for name, array in arrays.items():
        got = np.asarray(Image.open(out / "images" / name))
        assert got.shape == array.shape  # same size, grey stays grey
        hole = np.asarray(Image.open(out / "masks" / Path(name).with_suffix(".png")).convert("L")) > 127
        assert hole.sum() == 100
        keep = hole if array.ndim == 2 else np.broadcast_to(hole[..., None], array.shape)
        assert np.array_equal(got[~keep], array[~keep])
        assert not np.array_equal(got[keep], array[keep])
        first[name] = got
    # the written masks, given back as files with the same seed, give the same recovery
    again = tmp_path / "again"
    inpaint_main(["--ckpt", str(tiny_checkpoint), "--input", str(tmp_path / "in"), "--out", str(again),
                  "--masks", str(out / "masks"), "--seed", "3", "--steps", "3", "--device", "cpu"])
    for name in arrays:
        assert np.array_equal(np.asarray(Image.open(again / "images" / name)), first[name])


@pytest.mark.xdist_group("tiny_checkpoint")  # one worker trains the shared checkpoint
def test_frame_inpaint_rejects_masks_that_do_not_match_naming_the_file(tiny_checkpoint, tmp_path):
    write_inputs(tmp_path / "in")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "grey.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(masks / "wide.png")
    args = ["--ckpt", str(tiny_checkpoint), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
            "--masks", str(masks), "--device", "cpu", "--debug"]
    with pytest.raises(MaskError, match=r"no mask for image .*face\.pgm.*face\.png"):
        inpaint_main(args)
    Image.fromarray(np.zeros((42, 48), np.uint8)).save(masks / "face.png")  # transposed size
    with pytest.raises(MaskError, match=r"mask .*face\.png is 48x42"):
        inpaint_main(args)
    Image.fromarray(np.full((48, 42), 128, np.uint8)).save(masks / "face.png")
    with pytest.raises(MaskError, match=r"face\.png is not black-and-white"):
        inpaint_main(args)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_exemplars_start_trains_from_the_data_modules_images_and_frame_inpaint_takes_a_bank(tmp_path, capsys):
    out = tmp_path / "run"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            "debug=fast", "logger=csv", f"paths.output_dir={out}", "data.batch_size=2", "model.sampler.precision=fp32",
            "model.energy.net_size=null", "model.recovery={mask_size: 12, start: exemplars, test_steps: 2}",
        ])
    train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    model = load_model(ckpt)
    assert recovery_of(model).start == "exemplars" and model.buffer.bank is None  # the bank stays out of the checkpoint
    arrays = write_inputs(tmp_path / "in")
    bank = tmp_path / "bank"
    bank.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(bank / f"{i}.png")
    args = ["--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--mask-size", "10", "--device", "cpu"]
    assert inpaint_main([*args, "--out", str(tmp_path / "nobank")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "frame-inpaint: error:" in line]
    assert len(errors) == 1 and "--bank" in errors[0] and not (tmp_path / "nobank").exists()
    assert inpaint_main([*args, "--out", str(tmp_path / "harmonic"), "--bank", str(bank), "--start", "harmonic"]) == 0
    assert "frame-inpaint: warning: --bank is left unread" in capsys.readouterr().err  # not silently ignored
    assert inpaint_main([*args, "--out", str(tmp_path / "out"), "--bank", str(bank)]) == 0
    for name, array in arrays.items():
        got = np.asarray(Image.open(tmp_path / "out" / "images" / name))
        hole = np.asarray(Image.open(tmp_path / "out" / "masks" / Path(name).with_suffix(".png")).convert("L")) > 127
        keep = hole if array.ndim == 2 else np.broadcast_to(hole[..., None], array.shape)
        assert np.array_equal(got[~keep], array[~keep]) and not np.array_equal(got[keep], array[keep])
