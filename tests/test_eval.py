"""frame.eval: the maths by hand, each metric between its floor and its ceiling, the callback.

Random-weight VGG-16 (``source="random"``) and 32 px faces keep the file fast; one test uses
the real cached Caffe weights (``real_weights``).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.linalg
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from frame.callbacks import EvalMetrics
from frame.data.images import embedded_images, to_tensor
from frame.eval import NOT_FID, Evaluator, Score, VGGFeatures, format_table
from frame.eval.distribution import Precomputed, frechet_distance, kid, prdc
from frame.eval.pixels import colour_histogram_distance, distinct_count, pixel_moments
from frame.eval.report import C2ST_METRICS, OBJECT_METRICS, TEXTURE_METRICS, VGG_NOTE
from frame.eval.texture import gram_distance, random_crops, sliced_wasserstein, texture_reference

#: with parallel workers (pytest-xdist), the tests sharing this module's fixtures share a worker
pytestmark = pytest.mark.xdist_group("eval")

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def features() -> VGGFeatures:
    return VGGFeatures(source="random", min_size=32)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return to_tensor(embedded_images("lfw_faces"), 32)  # [100, 3, 32, 32]


@pytest.fixture(scope="module")
def face_evaluator(features, faces) -> Evaluator:
    """Reference: faces 50-99 (held out: 25, floor: 25 others); samples come from faces 0-49.

    Without the two-sample classifier (seconds per set; tests/test_eval_pixels.py calibrates it).
    """
    return Evaluator(faces[50:], "objects", features=features, c2st=False)


@pytest.fixture(scope="module")
def brick() -> torch.Tensor:
    return to_tensor(embedded_images("brick"), 128)  # [1, 3, 128, 128]


def noise_like(images: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))


def blur(images: torch.Tensor, k: int) -> torch.Tensor:
    return nn.functional.avg_pool2d(images, k, 1, k // 2, count_include_pad=False)


# ----------------------------------------------------------------------------- the maths by hand


def test_kid_is_the_unbiased_cubic_kernel_mmd():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 5, generator=g).double(), torch.randn(10, 5, generator=g).double() + 0.5
    k = lambda u, v: (u @ v.T / 5 + 1) ** 3  # KID's kernel, D = 5
    kxx, kyy = k(x, x), k(y, y)
    by_hand = ((kxx.sum() - kxx.trace()) + (kyy.sum() - kyy.trace())) / (10 * 9) - 2 * k(x, y).mean()
    mean, std = kid(x, y, subsets=3, subset_size=10)  # every subset holds every row
    assert mean == pytest.approx(float(by_hand), rel=1e-5) and std == pytest.approx(0, abs=1e-5)
    mean, std = kid(x, y)  # default: 100 subsets of half the rows
    assert std > 0 and mean == pytest.approx(float(by_hand), rel=0.5)
    assert kid(x, y) == (mean, std)  # seeded: the same subsets every time
    before = torch.random.get_rng_state()
    kid(x, y)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global random stream is untouched


def test_frechet_distance_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(30, 6, generator=g, dtype=torch.float64) * 2 + 1
    mx, my = x.mean(0).numpy(), y.mean(0).numpy()
    cx, cy = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    expected = ((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * scipy.linalg.sqrtm(cx @ cy).real)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    from torchmetrics.image.fid import FrechetInceptionDistance

    reference = FrechetInceptionDistance(feature=Precomputed(6))
    reference.update(x, real=True)
    reference.update(y, real=False)
    assert frechet_distance(x, y) == pytest.approx(float(reference.compute()), rel=1e-6)
    wide = torch.randn(5, 9, generator=g, dtype=torch.float64)  # fewer images than dimensions
    assert frechet_distance(wide, wide) == pytest.approx(0, abs=1e-9)
    other = torch.randn(7, 9, generator=g, dtype=torch.float64)
    cw, co = np.cov(wide.numpy(), rowvar=False), np.cov(other.numpy(), rowvar=False)
    expected = ((wide.mean(0) - other.mean(0)) ** 2).sum().item() + np.trace(cw + co - 2 * scipy.linalg.sqrtm(cw @ co).real)
    assert frechet_distance(wide, other) == pytest.approx(expected, rel=1e-5)


def test_prdc_on_sets_by_hand():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(60, 4, generator=g)
    same = prdc(real, real.clone(), k=3)
    assert same["precision"] == 1 and same["recall"] == 1 and same["coverage"] == 1
    far = prdc(real, real + 100, k=3)
    assert far == {"precision": 0, "recall": 0, "density": 0, "coverage": 0}
    # 60 samples, 5 distinct ones (each 12 times): recall 0 (their k-NN balls have radius 0),
    # coverage at most 5 real balls' worth
    collapsed = real[torch.arange(60) % 5]
    scores = prdc(real, collapsed, k=3)
    assert scores["precision"] == 1
    assert scores["recall"] == 0
    assert scores["coverage"] < 0.5


def test_distinct_count():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 8, 8, generator=g)
    assert distinct_count(images) == 6
    assert distinct_count(images[[0] * 10]) == 1
    near = images[[0, 0, 1, 1]] + torch.tensor([0, 0.01, 0, -0.01]).view(4, 1, 1, 1)
    assert distinct_count(near, threshold=0.05) == 2
    assert distinct_count(near, threshold=0.001) == 4


def test_pixel_checks():
    grey = torch.full((4, 3, 8, 8), 0.2)
    light = torch.full((4, 3, 8, 8), 0.5)
    assert pixel_moments(grey, light) == pytest.approx({"pixel_mean": 0.3, "pixel_std": 0.0}, abs=1e-6)
    assert colour_histogram_distance(grey, grey) == 0
    assert colour_histogram_distance(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)) == 1
    assert colour_histogram_distance(grey[:, :1], grey) == 0  # grey images are replicated to RGB


def test_gram_and_sliced_wasserstein_by_hand():
    g = torch.Generator().manual_seed(0)
    maps = {"t": torch.rand(3, 4, 5, 5, generator=g)}
    assert gram_distance(maps, texture_reference(maps)) < 1  # each sample against the mean Gram of the three
    single = {"t": maps["t"][:1]}
    assert gram_distance(single, texture_reference(single)) == pytest.approx(0, abs=1e-12)
    assert sliced_wasserstein(single, texture_reference(single)) == pytest.approx(0, abs=1e-12)
    shifted = {"t": single["t"] + 1}  # every vector moved by (1, 1, 1, 1)
    flat = single["t"][0].flatten(1).T.double()  # [positions, 4]
    g_ref, g_shifted = flat.T @ flat / 25, (flat + 1).T @ (flat + 1) / 25
    expected = torch.linalg.matrix_norm(g_shifted - g_ref) / torch.linalg.matrix_norm(g_ref)
    assert gram_distance(shifted, texture_reference(single)) == pytest.approx(float(expected), rel=1e-6)
    # a shift by v moves each projection on the unit direction u by u.v, every quantile alike
    reference = texture_reference(single, n_directions=8)
    u_dot_v = reference.directions["t"].double().sum(dim=1)
    expected = (u_dot_v.pow(2).mean() / reference.spreads["t"]).sqrt()
    assert sliced_wasserstein(shifted, reference) == pytest.approx(float(expected), rel=1e-5)


def test_random_crops_come_from_the_images():
    images = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    crops = random_crops(images, 4, 20, torch.Generator().manual_seed(0))
    assert crops.shape == (20, 3, 4, 4)
    for crop in crops:
        i, rest = divmod(int(crop[0, 0, 0]), 300)
        y, x = divmod(rest, 10)
        assert torch.equal(crop, images[i, :, y : y + 4, x : x + 4])


# ----------------------------------------------------------------------------- features


def test_vgg_features(features):
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(3, 1, 20, 24, generator=g)
    out = features(grey)
    assert out.shape == (3, features.num_features) == (3, 512)
    torch.testing.assert_close(out, features(grey.expand(-1, 3, -1, -1)))
    assert features.upsampled(grey).shape[-2:] == (32, 38)  # shorter side raised to min_size
    maps = features.maps(torch.rand(2, 3, 16, 16, generator=g))
    assert list(maps) == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert maps["conv5_1"].shape == (2, 512, 1, 1)
    with pytest.raises(ValueError, match="too small for conv5_1"):
        features.maps(torch.rand(1, 3, 8, 8))


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_vgg_features_plug_into_torchmetrics(features):
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = KernelInceptionDistance(feature=features, subsets=2, subset_size=3)
    g = torch.Generator().manual_seed(0)
    metric.update(torch.rand(4, 3, 32, 32, generator=g), real=True)
    metric.update(torch.rand(4, 3, 32, 32, generator=g), real=False)
    assert all(torch.isfinite(value) for value in metric.compute())


# ----------------------------------------------------------------------------- floor and ceiling


def assert_near_floor_far_for_noise(
    halves: dict[str, Score], noise: dict[str, Score], loose: dict[str, tuple[float, float]]
) -> None:
    """Real images sit near the floor; noise sits near the ceiling, several times farther from the floor.

    ``loose``: metric -> (tolerance of the real images' position, how many times farther noise is).
    """
    for name, score in halves.items():
        tolerance, times = loose.get(name, (0.35, 3))
        assert abs(score.position) < tolerance, (name, score)
        gap, noise_gap = abs(score.value - score.floor), abs(noise[name].value - noise[name].floor)
        assert noise_gap >= times * gap and noise[name].position > 0.75, (name, score, noise[name])


def test_object_metrics_near_floor_for_two_halves_far_for_noise(face_evaluator, faces):
    halves = face_evaluator(faces[:50])  # samples: 25 of 50 other faces
    noise = face_evaluator(noise_like(faces[:50]))
    assert set(halves) == set(OBJECT_METRICS) - set(C2ST_METRICS)
    distinct = halves.pop("distinct")  # noise is as diverse as faces; collapse is distinct's failure
    assert distinct.value == distinct.floor == 25 and distinct.ceiling == 1
    # copies' failure is memorising (ceiling: the training images themselves), grid_peak's a grid
    # (ceiling: 1.5): noise has neither, real faces neither
    copies, ratio, grid = halves.pop("copies"), halves.pop("copy_ratio"), halves.pop("grid_peak")
    assert copies.value == copies.floor == noise["copies"].value == 0 and copies.ceiling == 1
    assert ratio.floor == 1 and ratio.ceiling == 0 and 0.8 < ratio.value < 1.2 < noise["copy_ratio"].value
    assert grid.value < grid.ceiling == 1.5 and noise["grid_peak"].value < 1.5
    # at 25 images density wanders; the pixel mean of 25 faces wanders by about as much as
    # noise's mean grey differs from the faces' (the pixel std tells noise apart)
    assert_near_floor_far_for_noise(halves, noise, loose={"density": (0.4, 3), "pixel_mean": (0.7, 0)})
    assert halves["kid"].std > 0


def test_collapsed_chains_show_as_low_recall_coverage_and_distinct(face_evaluator, faces):
    collapsed = faces[:3][torch.arange(50) % 3]  # "50 chains, 3 distinct faces": 25 scored, ~8 copies each
    scores = face_evaluator(collapsed)
    assert scores["distinct"].value == 3
    assert scores["recall"].value == 0 < scores["recall"].floor - 0.5
    assert scores["coverage"].value < scores["coverage"].floor - 0.25  # random filters: wide k-NN balls


def ranking_sets(faces: torch.Tensor) -> dict[str, torch.Tensor]:
    """Training images, then stand-ins for a trained run's samples and step-1 samples, then noise.

    Not trained runs: a tiny run's chains on 2 CPU cores do not separate from its first steps
    in seconds (its first steps pull the chains off the mean image into artefacts before any
    face appears). FRAME samples of a trained model look like slightly blurred faces, hence a
    3 px blur; step-1 samples are Algorithm 1's start, the mean image, plus a little noise
    (with real weights) or, with random weights, a 9 px blur (random filters put flat images
    farther than noise in Fréchet distance: their conv5_3 vectors have no spread at all).
    """
    g = torch.Generator().manual_seed(0)
    mean_pixel = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255  # the Caffe mean (RGB)
    return {
        "training": faces,
        "trained": blur(faces, 3),
        "step 1 (random weights)": blur(faces, 9),
        "step 1": (mean_pixel + 0.02 * torch.randn(faces.shape, generator=g)).clamp(0, 1),
        "noise": noise_like(faces),
    }


def assert_ranked(evaluator: Evaluator, faces: torch.Tensor, order: list[str]) -> None:
    sets = ranking_sets(faces)
    raw = {name: evaluator.raw(sets[name]) for name in order}
    for metric in ("kid", "fd"):
        values = [raw[name][metric] for name in order]
        assert values == sorted(values), (metric, dict(zip(order, values)))


def test_kid_and_fd_rank_training_trained_step1_noise(face_evaluator, faces):
    assert_ranked(face_evaluator, faces[:50], ["training", "trained", "step 1 (random weights)", "noise"])


def test_texture_metrics_near_floor_for_two_crop_sets_far_for_noise(features, brick):
    left, right = brick[..., :64], brick[..., 64:]  # two halves of one exemplar, 128 x 64 each
    evaluator = Evaluator(left, "texture", features=features, n_crops=16, c2st=False)
    halves = evaluator(right)
    noise = evaluator(noise_like(right))
    assert evaluator.crop_size == 32
    assert set(halves) == set(TEXTURE_METRICS) - set(C2ST_METRICS)
    grid = halves.pop("grid_peak")  # its failure is a grid; neither the brick nor noise has one
    assert grid.value < grid.ceiling == 1.5 and noise["grid_peak"].value < 1.5
    assert_near_floor_far_for_noise(halves, noise, loose={})


def test_format_table_says_what_it_is():
    results = {"kid": Score(0.5, 0.0, 1.0, std=0.1), "coverage": Score(0.5, 1.0, 0.0),
               "c2st_acc": Score(0.9, 0.5, 1.0, interval=(0.81, 0.95))}
    table = format_table(results, "setup line")
    lines = table.splitlines()
    assert lines[0] == NOT_FID == "VGG-16 feature distances, not Inception FID: not comparable with published FIDs"
    assert lines[1] == "setup line"
    assert "floor" in lines[2] and "ceiling" in lines[2] and lines[2].split()[-1] == "judge"
    assert lines[3].split()[:5] == ["kid", "0.5", "+-", "0.1", "0"] and lines[3].split()[-1] == "VGG*"
    assert lines[4].split() == ["coverage", "0.5", "1", "0", "0.50", "higher", "VGG*"]
    assert lines[5].split() == ["c2st_acc", "0.9", "[0.81,", "0.95]", "0.5", "1", "0.80", "lower", "pixels"]
    assert lines[-1] == VGG_NOTE and "VGG features the model is trained on" in VGG_NOTE
    assert VGG_NOTE not in format_table({"c2st_acc": results["c2st_acc"]})


@pytest.mark.real_weights
def test_real_weights_rank_training_trained_step1_noise(faces):
    from frame.nets import weights

    if not (weights.cache_root() / weights.CACHE_FILENAME).exists():
        pytest.skip("no cached Caffe VGG-16 weights (run frame-fetch-weights)")
    evaluator = Evaluator(faces[50:], "objects", features=VGGFeatures(source="caffe", min_size=32))
    assert_ranked(evaluator, faces[:50], ["training", "trained", "step 1", "noise"])


# ----------------------------------------------------------------------------- the callback


class ChainsModule(pl.LightningModule):
    """The two things EvalMetrics reads: ``buffer.chains`` and ``to_images``; chains = faces + noise decaying."""

    def __init__(self, faces: torch.Tensor) -> None:
        super().__init__()
        self.faces = faces
        self.buffer = nn.Module()
        self.buffer.chains = torch.rand(faces.shape, generator=torch.Generator().manual_seed(0))
        self.weight = nn.Parameter(torch.zeros(()))

    def to_images(self, chains: torch.Tensor) -> torch.Tensor:
        return chains.clamp(0, 1)

    def training_step(self, batch, batch_idx):
        self.buffer.chains = 0.7 * self.buffer.chains + 0.3 * self.faces  # the chains move toward faces
        loss = (self.weight - 1) ** 2
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.faces, batch_size=len(self.faces))


def test_callback_logs_eval_metrics_next_to_training_metrics(tmp_path, faces):
    callback = EvalMetrics(every_n_steps=2, n_samples=8, kind="objects", source="random", min_size=32)
    trainer = pl.Trainer(
        max_steps=4, logger=CSVLogger(tmp_path, name="csv", version=""), callbacks=[callback],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        log_every_n_steps=1, accelerator="cpu",
    )
    trainer.fit(ChainsModule(faces[:16]))  # no datamodule: the batch is the reference
    with open(tmp_path / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    evals = [row for row in rows if row.get("eval/kid")]
    assert [int(row["step"]) for row in evals] == [1, 3]  # steps 2 and 4, under Lightning's step numbering
    for key in ("eval/kid", "eval/kid_std", "eval/kid_floor", "eval/kid_ceiling", "eval/fd", "eval/coverage",
                "eval/recall", "eval/distinct", "eval/pixel_mean", "eval/colour_hist", "eval/spectrum", "eval/grid_peak",
                "eval/copies", "eval/copy_ratio"):
        assert all(np.isfinite(float(row[key])) for row in evals), key
    # the classifier once, after the last step, in that step's row (the callbacks log at trainer.global_step)
    c2st = [row for row in rows if row.get("eval/c2st_acc")]
    assert [int(row["step"]) for row in c2st] == [3]
    for key in ("eval/c2st_acc", "eval/c2st_acc_low", "eval/c2st_acc_high", "eval/c2st_acc_floor", "eval/c2st_auc"):
        assert 0 <= float(c2st[0][key]) <= 1, key
    assert float(evals[-1]["eval/kid"]) < float(evals[0]["eval/kid"])  # chains closer to the faces
    # the face judge: the reference is faces, so it runs (auto); the chains grow more face-like
    assert [float(row["eval/face_auc_floor"]) for row in evals] == [0.5, 0.5]
    assert 1 >= float(evals[0]["eval/face_auc"]) > float(evals[-1]["eval/face_auc"]) >= 0
    assert {int(row["step"]) for row in rows if row.get("train/loss")} >= {1, 3}
    assert "eval/kid" in trainer.callback_metrics


def test_callback_c2st_every_n_steps_is_a_multiple_of_every_n_steps():
    assert EvalMetrics(every_n_steps=50, c2st_every_n_steps=100, source="random").c2st_every_n_steps == 100
    with pytest.raises(ValueError, match=r"callbacks.eval_metrics.c2st_every_n_steps must be a multiple of every_n_steps \(50\)"):
        EvalMetrics(every_n_steps=50, c2st_every_n_steps=75, source="random")


def test_callback_needs_enough_chains(tmp_path, faces):
    callback = EvalMetrics(every_n_steps=1, n_samples=4, source="random", min_size=32)
    trainer = pl.Trainer(max_steps=1, logger=False, callbacks=[callback], enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(ValueError, match="at least 6 samples, got 4 chains"):
        trainer.fit(ChainsModule(faces[:16]))
