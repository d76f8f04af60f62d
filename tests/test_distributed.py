"""DDP: each process runs its share of the chains; the run equals the single-process one."""

from __future__ import annotations

import pytest
import torch

from frame.run import train
from frame.run.checkpoints import read_checkpoint
from tests.test_training import make_cfg

COMMON = ("model.buffer.n_chains=4", "model.sampler.precision=fp32", "trainer.max_steps=3", "data.steps_per_epoch=3",
          "callbacks.sample_grid.every_n_steps=100")


@pytest.mark.slow
def test_two_processes_give_the_weights_and_chains_of_one(tmp_path):
    train(make_cfg(tmp_path / "one", *COMMON))
    # ddp_sim's two processes forked from this one, which has torch and Lightning loaded: spawned, each would
    # import them again (three times the CPU); the shards, the all-reduce and the checkpoint are the same
    train(make_cfg(tmp_path / "two", *COMMON, "trainer=ddp_sim", "trainer.strategy=ddp_fork"))
    one = read_checkpoint(tmp_path / "one" / "checkpoints" / "last.ckpt")
    two = read_checkpoint(tmp_path / "two" / "checkpoints" / "last.ckpt")
    assert one["global_step"] == two["global_step"] == 3
    for key, value in one["state_dict"].items():
        if key.startswith(("energy.weights", "buffer.chains")):
            # float noise of the all-reduce's order: up to ~4e-4 on chains of size ~2 (conv1_1's weights act on
            # the pixels directly); a wrong shard differs by O(1)
            torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=1e-3, msg=key)


@pytest.mark.slow
def test_chains_that_do_not_divide_by_the_processes_fail_clearly(tmp_path):
    with pytest.raises(Exception, match=r"model.buffer.n_chains=3 does not divide by the 2 processes"):
        train(make_cfg(tmp_path, "model.buffer.n_chains=3", "trainer=ddp_sim", "trainer.max_steps=1"))
