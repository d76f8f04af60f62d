"""The divergence guard also stops a run that diverges slowly, with every number finite."""

from __future__ import annotations

import re

import pytest
import pytorch_lightning as pl
import torch

from frame.run import DivergenceError, DivergenceGuard, train
from tests.test_training import make_cfg, read_metric


class AscentAfter(pl.Callback):
    """Turns learning into gradient ascent after `step` steps: the weights then push the
    dreams away from the data step after step, and every number stays finite."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for group in trainer.optimizers[0].param_groups:
            group["maximize"] = trainer.global_step >= self.step


def test_the_guard_stops_a_run_whose_gap_climbs(tmp_path):
    cfg = make_cfg(
        tmp_path, "model=stationary", "data=texture", "data.image_size=32", "model.energy.extractor.layers=[conv1_2]",
        "model.sampler.precision=fp32", "model.sampler.n_steps=10", "model.buffer.n_chains=1",
        "model.optimizer.lr=0.1", "trainer.max_steps=80", "data.steps_per_epoch=80",
        "callbacks.divergence_guard.patience=5", "callbacks.divergence_guard.climb=1.5",
        "+callbacks.ascent._target_=tests.test_divergence.AscentAfter", "+callbacks.ascent.step=25",
    )
    with pytest.raises(DivergenceError, match=r"slow divergence at layer conv1_2") as info:
        train(cfg)
    gaps = read_metric(tmp_path, "train/gap_rel")
    assert 25 < len(gaps) < 80 and all(map(torch.isfinite, torch.tensor(gaps)))  # stopped early, nothing NaN
    stopped_at = int(re.search(r"Divergence at step (\d+)", str(info.value)).group(1))
    assert len(gaps) == stopped_at  # the history keeps every step, the one that tripped the guard included
    assert max(gaps[-5:]) > 1.5 * min(gaps)
    assert "diverged_step" in str(info.value)


def test_a_gap_that_falls_and_wobbles_is_not_divergence():
    guard = DivergenceGuard(patience=3, window=1)  # raw values: the wobbles themselves are judged

    def energies(obs_a: float, syn_a: float, obs_b: float, syn_b: float) -> dict[str, torch.Tensor]:
        values = {"a": (obs_a, syn_a), "b": (obs_b, syn_b)}
        out = {f"train/energy_{side}/{layer}": torch.tensor(pair[i]) for layer, pair in values.items()
               for i, side in enumerate(("obs", "syn"))}
        out.update({f"train/energy_{side}": torch.tensor(sum(p[i] for p in values.values())) for i, side in enumerate(("obs", "syn"))})
        return out

    for gap in (0.9, 0.5, 0.3, 0.35, 0.4, 0.32, 0.45, 0.3, 0.5, 0.4):
        # layer b's energy is small and crosses zero (its weights take both signs): not divergence
        metrics = {"train/gap_rel/a": torch.tensor(gap), **energies(10.0, 9.0 + gap, 0.1, 0.09 if gap > 0.6 else -0.1)}
        assert guard.slow_divergence(metrics) == []
    for step in range(3):  # the energies drift apart while the gap looks fine; a moved most
        found = guard.slow_divergence({"train/gap_rel/a": torch.tensor(0.3), **energies(10.0, -5.0, 0.1, 0.0)})
    assert found and "energy spread" in found[0] and "layer a" in found[0]


#: train/gap_rel of a healthy generative ConvNet run (egret, 64 px, steps of 0.2, lr 2e-6): one low value
#: at step 2, while the first chains pass through the data's statistics, then a steady fall from 0.41
EARLY_DIP = [0.807, 0.406, 0.090, 0.309, 0.411, 0.380, 0.355, 0.363, 0.370, 0.365, 0.355, 0.338, 0.326, 0.318,
             0.312, 0.306, 0.299, 0.293, 0.287, 0.282, 0.278, 0.272, 0.266, 0.262, 0.257, 0.254, 0.251]
#: the same run turned to divergence: from 0.25, +6% a step (2x its 10-step best by step ~12)
CLIMB = EARLY_DIP + [0.251 * 1.06**k for k in range(1, 60)]


def run_guard(guard: DivergenceGuard, gaps: list[float]) -> list[str]:
    found = []
    for gap in gaps:
        found = found or guard.slow_divergence({"train/gap_rel/gconv": torch.tensor(gap)})
    return found


@pytest.mark.parametrize("patience", [10, 20])
def test_a_one_step_dip_early_does_not_stop_a_run_whose_gap_then_falls(patience):
    assert run_guard(DivergenceGuard(patience=patience, window=1), EARLY_DIP)  # raw values: a false alarm
    assert run_guard(DivergenceGuard(patience=patience), EARLY_DIP) == []  # the default's 10-step means


def test_a_gap_that_climbs_after_the_dip_is_still_stopped():
    guard = DivergenceGuard(patience=10)
    found, steps = [], 0
    for gap in CLIMB:
        steps += 1
        found = guard.slow_divergence({"train/gap_rel/gconv": torch.tensor(gap)})
        if found:
            break
    assert found and "layer gconv" in found[0] and "10-step mean" in found[0]
    best = min(sum(CLIMB[i - 10:i]) / 10 for i in range(10, steps + 1))
    assert sum(CLIMB[steps - 10:steps]) / 10 > 2 * best  # stopped while the mean is above 2x its best


def test_the_guard_resumes_with_its_window():
    first, resumed = DivergenceGuard(patience=10), DivergenceGuard(patience=10)
    run_guard(first, CLIMB[:40])
    resumed.load_state_dict(first.state_dict())
    assert resumed.recent == first.recent and resumed.streak == first.streak
    assert [bool(resumed.slow_divergence({"train/gap_rel/gconv": torch.tensor(g)})) for g in CLIMB[40:]] == [
        bool(first.slow_divergence({"train/gap_rel/gconv": torch.tensor(g)})) for g in CLIMB[40:]
    ]


def test_the_window_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="callbacks.divergence_guard.window"):
        DivergenceGuard(window=0)


def test_the_message_names_chatter_only_when_the_drifts_turn_back():
    assert "chatter" in DivergenceGuard.chatter({"train/langevin/drift_cos": torch.tensor(-0.9)})
    assert "-0.90" in DivergenceGuard.chatter({"train/langevin/drift_cos": torch.tensor(-0.9)})
    assert DivergenceGuard.chatter({"train/langevin/drift_cos": torch.tensor(0.8)}) == ""
    assert DivergenceGuard.chatter({}) == ""  # a sampler of one step logs no cosine
