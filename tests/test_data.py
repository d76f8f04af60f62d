"""Tests for frame.data: image reading (every PIL mode, bad files), embedded sets, datamodule."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from PIL import Image

from frame.data import (
    EMBEDDED_IMAGES,
    ImageDataError,
    ImageDataModule,
    PermutationSampler,
    SkippedImageWarning,
    embedded_images,
    list_images,
    load_image,
    load_images,
    to_tensor,
)

SIZE = (12, 10)  # PIL (width, height) of the written test images


def _pixel(path: Path) -> tuple[int, int, int]:
    """Top-left pixel of a loaded image, checking it came back as RGB."""
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == SIZE
    return image.getpixel((0, 0))


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 2) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected))


def _write_solid(path: Path, mode: str, colour) -> Path:
    Image.new(mode, SIZE, colour).save(path)
    return path


def _write_folder(folder: Path, colours: list[tuple[int, int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [_write_solid(folder / f"img{i}.png", "RGB", c) for i, c in enumerate(colours)]


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("name", "mode", "colour", "expected"),
    [
        ("grey.png", "L", 100, (100, 100, 100)),
        ("rgb.png", "RGB", (10, 20, 30), (10, 20, 30)),
        ("bilevel.png", "1", 1, (255, 255, 255)),
        ("grey.bmp", "L", 77, (77, 77, 77)),
        ("rgb.ppm", "RGB", (1, 2, 3), (1, 2, 3)),
        ("grey.pgm", "L", 200, (200, 200, 200)),
        ("rgb.tif", "RGB", (40, 50, 60), (40, 50, 60)),
        ("rgb.webp", "RGB", (90, 90, 90), (90, 90, 90)),
        ("opaque.png", "RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("grey_alpha.png", "LA", (0, 0), (255, 255, 255)),  # fully transparent -> white
        ("clear.png", "RGBA", (0, 0, 0, 0), (255, 255, 255)),
        ("half.png", "RGBA", (0, 0, 0, 128), (127, 127, 127)),  # black at 50% over white
        ("upper.PNG", "L", 5, (5, 5, 5)),
    ],
)
def test_modes_load_as_rgb(tmp_path, name, mode, colour, expected):
    path = _write_solid(tmp_path / name, mode, colour)
    assert _close(_pixel(path), expected), (_pixel(path), expected)


def test_palette_with_transparency_composites_over_white(tmp_path):
    image = Image.new("P", SIZE, 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "pal.png", transparency=0)  # index 0 (red) is transparent
    loaded = load_image(tmp_path / "pal.png")
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (0, 0, 255)


def test_palette_gif(tmp_path):
    path = tmp_path / "pal.gif"
    Image.new("RGB", SIZE, (0, 128, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    assert _close(_pixel(path), (0, 128, 0), tol=4)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full(SIZE[::-1], 32768, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert _close(_pixel(path), (128, 128, 128), tol=1)


@pytest.mark.parametrize(("maxval", "value"), [(65535, 32768), (4095, 2048)])
def test_sixteen_bit_pgm_is_scaled(tmp_path, maxval, value):
    path = tmp_path / "grey16.pgm"
    header = f"P5\n{SIZE[0]} {SIZE[1]}\n{maxval}\n".encode()
    path.write_bytes(header + np.full(SIZE[::-1], value, ">u2").tobytes())
    assert _close(_pixel(path), (128, 128, 128), tol=1)


def test_float_tiff_in_unit_range(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full(SIZE[::-1], 0.25, np.float32)).save(path)
    assert _close(_pixel(path), (64, 64, 64), tol=1)


def test_int32_tiff_outside_16_bit_is_stretched(tmp_path):
    path = tmp_path / "wide.tif"
    values = np.zeros(SIZE[::-1], np.int32)
    values[0, 0], values[-1, -1] = -1000, 1_000_000
    Image.fromarray(values).save(path)
    image = np.asarray(load_image(path))
    assert image[0, 0].tolist() == [0, 0, 0]
    assert image[-1, -1].tolist() == [255, 255, 255]


def test_cmyk_jpeg(tmp_path):
    path = _write_solid(tmp_path / "cmyk.jpg", "CMYK", (0, 255, 255, 0))  # pure red ink
    pixel = _pixel(path)
    assert pixel[0] > 200 and pixel[1] < 50 and pixel[2] < 50, pixel


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (20, 10), (200, 100, 50)).save(path, exif=exif)
    assert load_image(path).size == (10, 20)


# --------------------------------------------------------------------------- bad files


def test_truncated_jpeg_names_file(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(full.read_bytes()[:600])
    with pytest.raises(ImageDataError, match="truncated.jpg"):
        load_image(bad)


def test_text_file_named_png_names_file(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageDataError, match="notes.png"):
        load_image(bad)


def test_decompression_bomb_names_file(tmp_path, monkeypatch):
    path = _write_solid(tmp_path / "big.png", "L", 0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # image has 120 > 2 * 10 pixels
    with pytest.raises(ImageDataError, match="big.png"):
        load_image(path)


def test_load_images_fail_mode_raises(tmp_path):
    good = _write_folder(tmp_path, [(1, 2, 3)])
    (tmp_path / "bad.png").write_text("junk")
    with pytest.raises(ImageDataError, match="bad.png"):
        load_images([*good, tmp_path / "bad.png"], on_bad_image="fail")


def test_load_images_skip_mode_warns_and_skips(tmp_path):
    good = _write_folder(tmp_path, [(1, 2, 3), (4, 5, 6)])
    (tmp_path / "bad.png").write_text("junk")
    with pytest.warns(SkippedImageWarning, match="bad.png"):
        images = load_images([good[0], tmp_path / "bad.png", good[1]], on_bad_image="skip")
    assert [image.getpixel((0, 0)) for image in images] == [(1, 2, 3), (4, 5, 6)]


def test_load_images_all_bad_names_folder(tmp_path):
    folder = tmp_path / "junkdir"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_text("junk")
    with pytest.warns(SkippedImageWarning), pytest.raises(ImageDataError, match="junkdir"):
        load_images(list_images(folder), on_bad_image="skip")


def test_load_images_rejects_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="on_bad_image"):
        load_images(_write_folder(tmp_path, [(0, 0, 0)]), on_bad_image="ignore")


# --------------------------------------------------------------------------- listing


def test_list_images_folder_recursive_sorted_filtered(tmp_path):
    _write_folder(tmp_path / "b", [(0, 0, 0)])
    _write_folder(tmp_path, [(0, 0, 0), (0, 0, 0)])
    _write_solid(tmp_path / "c.JPG", "RGB", (0, 0, 0))
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / ".hidden.png").write_text("junk")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["b/img0.png", "c.JPG", "img0.png", "img1.png"]


def test_list_images_single_file_and_list(tmp_path):
    paths = _write_folder(tmp_path, [(0, 0, 0), (1, 1, 1)])
    assert list_images(paths[0]) == [paths[0]]
    assert list_images(str(paths[1])) == [paths[1]]
    assert list_images([paths[1], paths[0]]) == [paths[1], paths[0]]
    assert list_images([tmp_path, paths[0]]) == paths  # duplicates kept once


def test_list_images_missing_path(tmp_path):
    with pytest.raises(ImageDataError, match="does not exist.*nowhere"):
        list_images(tmp_path / "nowhere")


def test_list_images_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match="empty.*empty"):
        list_images(tmp_path / "empty")


def test_list_images_folder_without_images_lists_names(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    (folder / "data.csv").write_text("x")
    with pytest.raises(ImageDataError, match="docs") as info:
        list_images(folder)
    assert "notes.txt" in str(info.value) and "data.csv" in str(info.value)


def test_list_images_non_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageDataError, match="notes.txt"):
        list_images(tmp_path / "notes.txt")


def test_list_images_empty_list():
    with pytest.raises(ImageDataError):
        list_images([])


# --------------------------------------------------------------------------- embedded


def test_embedded_lfw_faces():
    faces = embedded_images("lfw_faces")
    assert len(faces) == 100
    assert all(face.mode == "RGB" and face.size == (25, 25) for face in faces)
    pixels = np.asarray(faces[0])
    assert pixels.dtype == np.uint8 and pixels.max() > 100
    assert np.array_equal(pixels[..., 0], pixels[..., 2])  # grey replicated


@pytest.mark.parametrize("name", ["brick", "astronaut"])
def test_embedded_skimage(name):
    (image,) = embedded_images(name)
    assert image.mode == "RGB" and min(image.size) >= 256


def test_embedded_unknown_lists_names():
    with pytest.raises(ValueError, match="lfw_faces") as info:
        embedded_images("nope")
    assert all(name in str(info.value) for name in EMBEDDED_IMAGES)


def test_embedded_sklearn_optional():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="scikit-learn"):
            embedded_images("china")
    else:
        assert embedded_images("china")[0].mode == "RGB"


# --------------------------------------------------------------------------- to_tensor


def test_to_tensor_resizes_shorter_side_and_center_crops():
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 10, 20))  # blue left quarter: cropped away
    out = to_tensor([wide, Image.new("L", (5, 7), 128)], 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert torch.allclose(out[0, :, :, 1:-1], torch.tensor([1.0, 0, 0]).view(3, 1, 1), atol=0.02)
    assert torch.allclose(out[1], torch.full((3, 16, 16), 128 / 255), atol=0.01)


def test_to_tensor_rectangular_size_covers():
    out = to_tensor([Image.new("RGB", (30, 30), (0, 255, 0))], (8, 24))
    assert out.shape == (1, 3, 8, 24)


def test_to_tensor_grayscale_replicates_channels():
    out = to_tensor([Image.new("RGB", (9, 9), (255, 0, 0))], 8, grayscale=True)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert 0.2 < out[0, 0, 0, 0] < 0.4  # luma of pure red ~ 0.299


# --------------------------------------------------------------------------- datamodule


def _epoch(dm: ImageDataModule) -> list[torch.Tensor]:
    return list(dm.train_dataloader())


def _ids(batch: torch.Tensor, images: torch.Tensor) -> list[int]:
    """Index of each batch image in ``images`` (images are distinct solid colours)."""
    matches = (batch[:, None] == images[None]).flatten(2).all(-1)
    assert (matches.sum(1) == 1).all()
    return matches.float().argmax(1).tolist()


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    _write_folder(tmp_path / "imgs", [(i * 40, 255 - i * 40, 7 * i) for i in range(5)])
    return tmp_path / "imgs"


def test_datamodule_full_batches_hold_every_image_once(colour_folder):
    dm = ImageDataModule(root=str(colour_folder), image_size=8, steps_per_epoch=7)
    dm.setup("fit")
    assert dm.n_images == 5 and dm.effective_batch_size == 5 and len(dm.paths) == 5
    images = dm.observed_images()
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    batches = _epoch(dm)
    assert len(batches) == len(dm.train_dataloader()) == 7
    orders = [_ids(batch, images) for batch in batches]
    assert all(isinstance(b, torch.Tensor) and b.shape == (5, 3, 8, 8) for b in batches)
    assert all(sorted(order) == list(range(5)) for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # random order


def test_datamodule_minibatches(colour_folder):
    dm = ImageDataModule(root=colour_folder, image_size=8, batch_size=2, steps_per_epoch=10)
    batches = _epoch(dm)  # setup happens lazily
    assert len(batches) == 10 and all(b.shape == (2, 3, 8, 8) for b in batches)
    counts = Counter(i for b in batches for i in _ids(b, dm.images))
    assert set(counts) == set(range(5)) and max(counts.values()) - min(counts.values()) <= 1


def test_datamodule_batch_size_clamped_to_n(colour_folder):
    dm = ImageDataModule(root=colour_folder, image_size=8, batch_size=50, steps_per_epoch=2)
    assert [b.shape[0] for b in _epoch(dm)] == [5, 5]


def test_datamodule_hybrid_of_two_files(colour_folder):
    files = sorted(colour_folder.iterdir())[:2]
    dm = ImageDataModule(root=[str(f) for f in files], image_size=8, steps_per_epoch=3)
    dm.setup()
    assert dm.n_images == 2 and dm.paths == [str(f) for f in files]
    assert all(b.shape == (2, 3, 8, 8) for b in _epoch(dm))


def test_datamodule_root_wins_and_skip(colour_folder):
    (colour_folder / "zbad.png").write_text("junk")
    dm = ImageDataModule(root=colour_folder, embedded="lfw_faces", image_size=8, on_bad_image="skip")
    with pytest.warns(SkippedImageWarning, match="zbad.png"):
        dm.setup()
    assert dm.n_images == 5 and not any("zbad" in p for p in dm.paths)


def test_datamodule_embedded_grayscale():
    dm = ImageDataModule(embedded=["lfw_faces", "astronaut"], image_size=16, grayscale=True, steps_per_epoch=1)
    dm.setup()
    assert dm.n_images == 101 and dm.paths[0] == "embedded:lfw_faces/000" and dm.paths[-1] == "embedded:astronaut/000"
    assert torch.equal(dm.images[:, 0], dm.images[:, 1]) and torch.equal(dm.images[:, 1], dm.images[:, 2])
    (batch,) = _epoch(dm)
    assert batch.shape == (101, 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 4}, "data.image_size"),
        ({"image_size": (64, 2)}, "data.image_size"),
        ({"image_size": "64"}, "data.image_size"),
        ({"on_bad_image": "ignore"}, "data.on_bad_image"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"steps_per_epoch": 0}, "data.steps_per_epoch"),
        ({"num_workers": -1}, "data.num_workers"),
    ],
)
def test_datamodule_validation_names_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ImageDataModule(embedded="brick", **kwargs)


def test_datamodule_needs_a_source():
    with pytest.raises(ValueError, match="data.root"):
        ImageDataModule()


def test_datamodule_before_setup_is_clear():
    with pytest.raises(RuntimeError, match="setup"):
        ImageDataModule(embedded="brick").n_images


# --------------------------------------------------------------------------- sampling / Lightning


def test_permutation_sampler_seeded_epochs():
    sampler = PermutationSampler(4, 10, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 10 and sorted(first[:4]) == [0, 1, 2, 3]
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_distributed_sharding_keeps_steps_and_full_batches(colour_folder):
    """Under DDP Lightning wraps (not replaces) our sampler; each rank keeps full-permutation steps."""
    from pytorch_lightning.trainer.connectors.data_connector import _get_distributed_sampler

    world = 2
    dm = ImageDataModule(root=colour_folder, image_size=8, steps_per_epoch=3)
    dm.setup()
    dm.trainer = type("FakeTrainer", (), {"world_size": world})()  # only world_size is read
    loader = dm.train_dataloader()
    wrapped = _get_distributed_sampler(loader, shuffle=False, overfit_batches=0, num_replicas=world, rank=0)
    assert isinstance(wrapped, DistributedSamplerWrapper)
    per_rank = []
    for rank in range(world):
        shard = list(DistributedSamplerWrapper(loader.sampler, num_replicas=world, rank=rank, shuffle=False))
        assert len(shard) == 3 * 5  # steps_per_epoch batches of N on every rank
        per_rank.append([shard[i : i + 5] for i in range(0, len(shard), 5)])
    for step in range(3):  # together, the ranks see every image exactly `world` times
        assert Counter(i for rank in per_rank for i in rank[step]) == {i: world for i in range(5)}


class _MeanModel(pl.LightningModule):
    """Tiny module recording the batches it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.shapes: list[tuple[int, ...]] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.shapes.append(tuple(batch.shape))
        return (self.weight - batch.mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_runs_steps_per_epoch(colour_folder):
    dm = ImageDataModule(root=colour_folder, image_size=8, steps_per_epoch=4)
    model = _MeanModel()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's num_workers / logging hints
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 8
    assert model.shapes == [(5, 3, 8, 8)] * 8
