"""FrameModel: Algorithm 1's bookkeeping (what is computed once, what the chains look like)."""

from __future__ import annotations

import warnings

import torch

from frame.energies import StationaryEnergy
from frame.models import FrameModel
from frame.sampling import LangevinSampler
from tests.conftest import TinyExtractor


def test_observed_features_are_computed_once_per_distinct_batch():
    extractor = TinyExtractor()
    calls = []
    forward = extractor.forward
    extractor.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    model = FrameModel(StationaryEnergy(extractor), LangevinSampler(n_steps=1, precision="fp32"),
                       buffer={"n_chains": 2}, image_size=8)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        for _ in range(3):  # a full-batch run: the same images every iteration
            model.training_step(images.clone(), 0)
        assert calls.count(3) == 1  # the observed batch went through the filters once
        model.training_step(torch.rand(3, 3, 8, 8), 0)  # another batch: computed anew
        assert calls.count(3) == 2
