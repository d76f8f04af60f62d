"""Top-layer FRAME (eq. 24), log Z by annealed importance sampling, and the Bayes classifier (eq. 4)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frame.classify import bayes_posterior, check_category_models, log_likelihoods, logits, normalised_priors, top_layer_features
from frame.cli.classify import main
from frame.energies import StationaryEnergy, TopLayerEnergy
from frame.models.base import FrameModel
from frame.nets.weights import random_state_dict
from frame.partition import annealed_log_z, summarise
from frame.sampling import LangevinSampler
from tests.test_energy import filled_weights

ROOT = Path(__file__).resolve().parents[1]


def top_layer(extractor, seed: int) -> TopLayerEnergy:
    return filled_weights(TopLayerEnergy(extractor), seed)


# -- the energy ----------------------------------------------------------------------------------
def test_energy_is_the_weighted_sum_of_pooled_top_layer_features(tiny_extractor):
    energy = top_layer(tiny_extractor, 0)
    x = torch.rand(3, 3, 8, 8)
    feats = tiny_extractor(x)
    pooled = {layer: feats[layer].mean(dim=(2, 3)) for layer in ("a", "b")}  # F_k(I): one number per channel
    by_hand = sum((energy.weights[layer] * pooled[layer]).sum(1) for layer in ("a", "b"))  # sum_k w_k F_k(I)
    torch.testing.assert_close(energy(x), by_hand)
    features = energy.feature_vector(feats)
    assert features.shape == (3, 4 + 5)
    torch.testing.assert_close(features @ energy.weight_vector(), by_hand)
    # the stationary model of eq. (10) on the same maps sums over positions: |D| times more per layer
    stationary = StationaryEnergy(tiny_extractor)
    stationary.load_state_dict(energy.state_dict())
    torch.testing.assert_close(stationary.layer_energies(feats)["b"], 16 * energy.layer_energies(feats)["b"])


def test_learning_gradient_is_the_gap_of_the_pooled_features(tiny_extractor):
    energy = top_layer(tiny_extractor, 1)
    obs, syn = torch.rand(5, 3, 8, 8), torch.rand(4, 3, 8, 8)
    feats_obs, feats_syn = tiny_extractor(obs), tiny_extractor(syn)
    energy.contrastive_loss(feats_obs, feats_syn).backward()
    for layer in ("a", "b"):
        gap = feats_obs[layer].mean(dim=(0, 2, 3)) - feats_syn[layer].mean(dim=(0, 2, 3))  # mean_obs F - mean_syn F
        torch.testing.assert_close(-energy.weights[layer].grad, gap)


def test_langevin_gradient_is_sum_of_weighted_feature_gradients(tiny_extractor):
    energy = top_layer(tiny_extractor, 2)
    x = torch.rand(2, 3, 6, 6)
    _, grad = LangevinSampler(precision="fp32", channels_last=False).energy_grad(energy, x)
    by_hand = torch.zeros_like(x)
    for layer in ("a", "b"):
        for k, w_k in enumerate(energy.weights[layer].tolist()):
            xk = x.clone().requires_grad_(True)
            (dF,) = torch.autograd.grad(tiny_extractor(xk)[layer][:, k].mean(dim=(1, 2)).sum(), xk)
            by_hand += w_k * dF  # df/dI = sum_k w_k dF_k/dI
    torch.testing.assert_close(grad, by_hand)


def test_canvas_must_equal_the_image_size(tiny_extractor):
    with pytest.raises(ValueError, match="canvas_size"):
        FrameModel(TopLayerEnergy(tiny_extractor), LangevinSampler(n_steps=1), image_size=8, canvas_size=12)


# -- log Z by annealed importance sampling -----------------------------------------------------------
@pytest.mark.parametrize("sigma, reverse", [(1.0, False), (2.0, False), (1.0, True)])
def test_ais_finds_log_z_of_a_linear_energy_on_gaussian_noise(sigma, reverse):
    # f(I) = w . I under q = N(0, sigma^2): Z = E_q[exp(w . I)] = exp(sigma^2 ||w||^2 / 2) exactly, p = N(sigma^2 w, sigma^2)
    w = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(0))
    exact = sigma**2 * float(w.square().sum()) / 2
    start = sigma**2 * w + sigma * torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(2)) if reverse else None
    sampler = LangevinSampler(sigma=sigma, step_size=sigma, channels_last=False)
    estimate = annealed_log_z(lambda x: (x * w).flatten(1).sum(1), sampler, (1, 4, 4), n_chains=200, n_temperatures=200,
                              generator=torch.Generator().manual_seed(1), start=start)
    assert 0.3 < estimate.acceptance < 1.0  # the Metropolis-Hastings step does reject
    assert estimate.ess > 50
    assert abs(estimate.log_z - exact) < max(4 * estimate.stderr, 0.1), (estimate.log_z, exact, estimate.stderr)


def test_unadjusted_ais_keeps_every_step_and_reports_what_mala_would_accept():
    w = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(0))
    f = lambda x: (x * w).flatten(1).sum(1)
    common = dict(n_chains=50, n_temperatures=20, step_size=1.0)
    exact = annealed_log_z(f, LangevinSampler(channels_last=False), (1, 4, 4), generator=torch.Generator().manual_seed(4), **common)
    loose = annealed_log_z(f, LangevinSampler(channels_last=False), (1, 4, 4), generator=torch.Generator().manual_seed(4), metropolis=False, **common)
    assert 0.3 < loose.acceptance < 1.0
    start = torch.randn((50, 1, 4, 4), generator=torch.Generator().manual_seed(4))
    assert not torch.equal(loose.chains, exact.chains)
    # no step is rejected: every value of every chain has moved away from its start
    assert (loose.chains != start).flatten(1).all(1).all()


def test_ais_without_moves_is_importance_sampling_from_q():
    # one temperature: log W = f(I_0) with I_0 ~ q, so the estimate is log mean exp f(I_0)
    w = torch.full((1, 2, 2), 0.5)
    estimate = annealed_log_z(lambda x: (x * w).flatten(1).sum(1), LangevinSampler(channels_last=False), (1, 2, 2),
                              n_chains=8, n_temperatures=1, generator=torch.Generator().manual_seed(3))
    start = torch.randn((8, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(estimate.log_weights, (start * w).flatten(1).sum(1).double())
    summary = summarise(estimate.log_weights)
    assert summary.log_z == pytest.approx(float(torch.logsumexp(estimate.log_weights, 0)) - np.log(8))
    assert 1 <= summary.ess <= 8


# -- the Bayes rule and the soft-max of eq. (4) -------------------------------------------------------
def category_models(extractor, n: int = 3) -> dict[str, FrameModel]:
    return {f"c{i}": FrameModel(top_layer(extractor, 10 + i), LangevinSampler(n_steps=1), image_size=8) for i in range(n)}


def test_bayes_posterior_equals_softmax_of_the_logits(tiny_extractor):
    models = category_models(tiny_extractor)
    check_category_models(models)
    x, feats = top_layer_features(models["c0"], torch.rand(6, 3, 8, 8), batch_size=4)
    priors = normalised_priors(list(models), {"c0": 1, "c1": 3, "c2": 6})
    # log Z(w_c) set so that no category wins every image (any values would do for the identity)
    log_z = torch.stack([model.energy(x).double().mean() + p.log() for model, p in zip(models.values(), priors)])
    posterior = bayes_posterior(log_likelihoods(models, x, feats, log_z), priors)
    scores = logits(models, feats, priors, log_z)
    torch.testing.assert_close(posterior, torch.softmax(scores, 1), rtol=0, atol=1e-12)
    assert posterior.argmax(1).unique().numel() > 1  # the images do not all go to one category
    torch.testing.assert_close(posterior.sum(1), torch.ones(6, dtype=torch.float64))


def test_priors_and_logz_shift_the_logits_as_biases(tiny_extractor):
    models = category_models(tiny_extractor, 2)
    x, feats = top_layer_features(models["c0"], torch.rand(3, 3, 8, 8))
    uniform = logits(models, feats, normalised_priors(["c0", "c1"]), torch.zeros(2))
    skewed = logits(models, feats, normalised_priors(["c0", "c1"], {"c0": 1, "c1": 4}), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(skewed - uniform, torch.tensor([np.log(0.2 / 0.5), np.log(0.8 / 0.5) - 2.0]).expand(3, 2).double())


def test_classifier_refuses_models_that_do_not_share_features(tiny_extractor):
    from tests.tiny import TinyExtractor

    models = category_models(tiny_extractor, 2)
    models["other"] = FrameModel(top_layer(TinyExtractor(seed=5), 0), LangevinSampler(n_steps=1), image_size=8)
    with pytest.raises(ValueError, match="filter weights"):
        check_category_models(models)
    stationary = {"a": models["c0"], "b": FrameModel(StationaryEnergy(tiny_extractor), LangevinSampler(n_steps=1), image_size=8)}
    with pytest.raises(ValueError, match="top-layer"):
        check_category_models(stationary)
    with pytest.raises(ValueError, match="no prior for category 'c1'"):
        normalised_priors(["c0", "c1"], {"c0": 1.0})


# -- frame-classify, as a user runs it ---------------------------------------------------------------
def classify(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "frame.cli.classify", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frame-classify: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_classify_names_a_bad_model_flag_in_one_line(tmp_path, capsys):
    assert_one_line_error(classify("--model", "face", "--input", ".", cwd=tmp_path), "--model", "NAME=VALUE")
    assert main(["--model", "a=x.ckpt", "--model", "b=y.ckpt", "--log-z", "c=3", "--input", "."]) == 2
    assert "--log-z c=...: 'c' is not a --model category" in capsys.readouterr().err
    assert main(["--model", "a=x.ckpt", "--model", "a=y.ckpt", "--input", "."]) == 2
    assert "--model a=... is given twice" in capsys.readouterr().err


@pytest.mark.slow
def test_frame_classify_end_to_end_on_two_trained_checkpoints(tmp_path, capsys):
    """Two checkpoints of train.py's top_layer config (trained in this process), classified by frame-classify's
    ``main`` here (the command as a process: the test above); the refusal of a lone model by the same ``main``."""
    from frame.run import train
    from tests.test_training import make_cfg

    weights = tmp_path / "vgg.pt"
    torch.save(random_state_dict(seed=1), weights)
    rng = np.random.default_rng(0)
    folders = {"bright": (150, 255), "dark": (0, 100)}
    for name, (lo, hi) in folders.items():
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(lo, hi, (20, 20), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    ckpts = {}
    for name in folders:
        train(make_cfg(tmp_path / f"run_{name}", "model=top_layer", "data.image_size=16", "data.grayscale=true",
                       f"data.root={tmp_path / name}", f"vgg_source={weights}"))
        ckpts[name] = tmp_path / f"run_{name}" / "checkpoints" / "last.ckpt"
    out = tmp_path / "posteriors.csv"
    capsys.readouterr()
    status = main(["--model", f"bright={ckpts['bright']}", "--model", f"dark={ckpts['dark']}", "--prior", "bright=1",
                   "--prior", "dark=3", "--input", str(tmp_path / "bright"), "--input", str(tmp_path / "dark"),
                   "--ais-temperatures", "3", "--ais-chains", "2", "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "max |Bayes posterior - softmax" in printed.out
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and set(rows[0]) == {"input", "path", "predicted", "p_bright", "p_dark", "logit_bright", "logit_dark"}
    for row in rows:
        p = np.array([float(row["p_bright"]), float(row["p_dark"])])
        z = np.array([float(row["logit_bright"]), float(row["logit_dark"])])
        assert p.sum() == pytest.approx(1.0, abs=1e-8)
        np.testing.assert_allclose(p, np.exp(z - z.max()) / np.exp(z - z.max()).sum(), atol=1e-7)
        assert row["predicted"] == ("bright", "dark")[int(p.argmax())]
    # a model whose features differ from the others': one line, exit 2, no CSV written over
    out.unlink()
    capsys.readouterr()
    assert main(["--model", f"bright={ckpts['bright']}", "--input", str(tmp_path / "bright"), "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("frame-classify: error: ") and "at least two categories" in line, line
    assert not out.exists()
