"""FrameModel: Algorithm 1's bookkeeping (what is computed once, what the chains look like)."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
import torch

from frame.buffer import ChainBuffer
from frame.energies import StationaryEnergy
from frame.input_space import caffe_space
from frame.models import FrameModel
from frame.sampling import LangevinSampler
from tests.tiny import TinyExtractor


def test_observed_features_are_computed_once_per_distinct_batch():
    extractor = TinyExtractor()
    calls = []
    forward = extractor.forward
    extractor.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    model = FrameModel(StationaryEnergy(extractor), LangevinSampler(n_steps=1, precision="fp32"),
                       buffer=partial(ChainBuffer, n_chains=2), image_size=8)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        for _ in range(3):  # a full-batch run: the same images every iteration
            model.training_step(images.clone(), 0)
        assert calls.count(3) == 1  # the observed batch went through the filters once
        model.training_step(torch.rand(3, 3, 8, 8), 0)  # another batch: computed anew
        assert calls.count(3) == 2


def test_grey_data_gives_grey_chains_end_to_end(tmp_path):
    """data.grayscale=auto on grey images (the embedded LFW faces): one-channel chains that the
    colour VGG sees in all three channels; the checkpoint rebuilds a grey model."""
    from frame.run import train
    from frame.run.checkpoints import load_model
    from tests.test_training import make_cfg

    train(make_cfg(tmp_path, "model=nonstationary", "data=objects", "model.energy.extractor.layers=[conv1_2]"))
    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert model.buffer.chains.shape[1] == 1 and model.input_space.grey
    images = model.to_images(model.buffer.chains)
    assert images.shape[1] == 3 and torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    assert model.model_config["energy"]["extractor"]["grey"] is True
    # the net sees the grey chain in all three channels, in Caffe's BGR units
    net_input = model.input_space.to_network(model.buffer.chains[:1])
    torch.testing.assert_close(net_input, caffe_space().to_input(images[:1]))


def test_colour_data_keeps_colour_chains(tmp_path):
    from frame.run import train
    from frame.run.checkpoints import load_model
    from tests.test_training import make_cfg

    train(make_cfg(tmp_path, "model=stationary", "data=texture", "data.embedded=chelsea", "model.energy.extractor.layers=[conv1_2]"))
    assert load_model(tmp_path / "checkpoints" / "last.ckpt").buffer.chains.shape[1] == 3


def test_layer_variance_precondition_scales_each_layers_update():
    """model.precondition=layer_variance: one SGD step moves each layer's weights by the plain
    step times that layer's factor (1 for the layer of largest observed variance)."""
    from frame.energies import NonStationaryEnergy
    from frame.run.precondition import Precondition

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    steps = {}
    for precondition in ("none", "layer_variance"):
        torch.manual_seed(0)
        model = FrameModel(NonStationaryEnergy(TinyExtractor(), image_size=8), LangevinSampler(n_steps=1, precision="fp32"),
                           buffer=partial(ChainBuffer, n_chains=2), image_size=8)
        callback = Precondition(precondition)
        optimizer = model.configure_optimizers()
        callback.on_train_batch_start(None, model, images, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log outside a Trainer
            loss = model.training_step(images.clone(), 0)
        loss.backward()
        callback.on_before_optimizer_step(None, model, optimizer)
        optimizer.step()
        steps[precondition] = {layer: w.detach().clone() for layer, w in model.energy.weights.items()}
        factors = callback.factors
    assert set(factors) == {"a", "b"} and min(f.item() for f in factors.values()) == 1.0
    for layer, factor in factors.items():
        torch.testing.assert_close(steps["layer_variance"][layer], steps["none"][layer] * factor)
    assert max(f.item() for f in factors.values()) > 1.0  # the tiny layers differ in scale
    with pytest.raises(ValueError, match="^model.precondition must be one of"):
        Precondition("per_layer")


def test_grey_chains_reach_the_net_in_the_samplers_memory_format():
    """A one-channel tensor has no lay-out of its own: the three-channel network input made from
    grey chains takes the sampler's (channels-last: bf16 pooling in NCHW is ~10x slower on a CPU)."""
    chains = torch.randn(2, 1, 8, 8)
    for channels_last in (True, False):
        extractor = TinyExtractor()
        extractor.input_space = caffe_space(grey=True)
        FrameModel(StationaryEnergy(extractor), LangevinSampler(n_steps=1, channels_last=channels_last),
                   buffer=partial(ChainBuffer, n_chains=2), image_size=8)
        net_input = extractor.input_space.to_network(chains)
        assert net_input.shape == (2, 3, 8, 8)
        assert net_input.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert net_input.is_contiguous() != channels_last
        torch.testing.assert_close(net_input, caffe_space().to_input(caffe_space(grey=True).to_images(chains)))
