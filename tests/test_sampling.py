"""The Langevin sampler of eq. (16)."""

import ctypes.util
import resource
import sys
import warnings

import pytest
import torch

import frame.sampling as sampling
from frame.sampling import LangevinSampler


def zero_energy(x):
    return (x * 0).flatten(1).sum(1)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_zero_weights_chains_converge_to_reference_gaussian(sigma):
    # With w = 0, p(I; w) = q(I) = N(0, sigma^2) (eq. 8). The discretised chain of eq. (16)
    # has stationary variance sigma^2 / (1 - delta^2 / (4 sigma^2)); check mean and variance.
    torch.manual_seed(0)
    delta = 0.3
    # relaxation takes ~ 2 sigma^2 / delta^2 steps; run ten times that
    n_steps = int(10 * 2 * sigma**2 / delta**2)
    sampler = LangevinSampler(step_size=delta, n_steps=n_steps, sigma=sigma, precision="fp32")
    x = sampler.sample(zero_energy, torch.full((8, 3, 16, 16), 5.0))
    expected_var = sigma**2 / (1 - delta**2 / (4 * sigma**2))
    assert abs(x.mean().item()) < 0.05 * sigma
    assert x.var().item() == pytest.approx(expected_var, rel=0.05)


def test_drift_follows_energy_gradient_without_noise():
    # f(I) = <a, I> pulls the chain to the mode a * sigma^2 of exp(f) q.
    a = torch.randn(1, 3, 4, 4)
    sampler = LangevinSampler(step_size=0.5, n_steps=400, sigma=1.5, noise=False, precision="fp32")
    x = sampler.sample(lambda x: (a * x).flatten(1).sum(1), torch.zeros(2, 3, 4, 4))
    torch.testing.assert_close(x, (a * 1.5**2).expand(2, -1, -1, -1), atol=1e-4, rtol=1e-4)


def test_trace_tells_gliding_chains_from_chattering_ones():
    # f(I) = -a |I - c| (a kink at c, like a ReLU net's): a small step walks down to c in the
    # same direction every step (cosine +1); a step that overshoots the kink makes the chains
    # jump across it from step to step (cosine -1), the chatter of a step too large.
    c = torch.full((2, 1, 4, 4), 3.0)

    def kinked(x):
        return -4.0 * (x - c).abs().flatten(1).sum(1)

    big = 1e6  # a flat prior, so that the kink alone sets the drift
    gliding = LangevinSampler(step_size=0.1, n_steps=10, sigma=big, noise=False, precision="fp32")
    gliding.sample(kinked, torch.zeros(2, 1, 4, 4))
    assert gliding.last_trace["drift_cos"].item() == pytest.approx(1.0, abs=1e-4)
    chattering = LangevinSampler(step_size=1.0, n_steps=10, sigma=big, noise=False, precision="fp32")
    x = chattering.sample(kinked, torch.full((2, 1, 4, 4), 2.9))
    assert chattering.last_trace["drift_cos"].item() == pytest.approx(-1.0, abs=1e-4)
    assert (x - c).abs().max() <= 2.0  # it goes nowhere: it hops across c
    # the noise-free move a step: (delta^2 / 2) |f'| = 0.5 * 4 for the large step
    assert chattering.last_trace["move_rms"].item() == pytest.approx(2.0, rel=1e-4)


def test_trace_counts_only_the_moving_pixels():
    # zero energy, chains at 5, sigma 1: the drift is -5 where pixels move; fixed ones do not count
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :] = True
    sampler = LangevinSampler(step_size=0.3, n_steps=1, noise=False, precision="fp32")
    sampler.sample(zero_energy, torch.full((3, 1, 8, 8), 5.0), mask=mask)
    assert sampler.last_trace["move_rms"].item() == pytest.approx(0.5 * 0.3**2 * 5.0, rel=1e-5)
    assert "drift_cos" not in sampler.last_trace  # one step has no pair of drifts


def test_mask_keeps_unmasked_pixels_exactly():
    torch.manual_seed(1)
    x0 = torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 3:7] = True
    sampler = LangevinSampler(step_size=0.3, n_steps=20, precision="fp32")
    x = sampler.sample(lambda x: (x**2).flatten(1).sum(1), x0, mask=mask)
    free = mask.expand_as(x0)
    assert torch.equal(x[~free], x0[~free])
    assert not torch.equal(x[free], x0[free])


def test_all_missing_mask_equals_unconditional_sampling():
    x0 = torch.randn(2, 3, 8, 8)
    sampler = LangevinSampler(step_size=0.3, n_steps=5, precision="fp32")
    torch.manual_seed(3)
    a = sampler.sample(zero_energy, x0, mask=torch.ones(1, 1, 8, 8))
    torch.manual_seed(3)
    b = sampler.sample(zero_energy, x0)
    assert torch.equal(a, b)


def test_clamp_keeps_chains_inside_bounds():
    sampler = LangevinSampler(step_size=1.0, n_steps=10, clamp=True, precision="fp32")
    lo, hi = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    x = sampler.sample(lambda x: 10 * x.flatten(1).sum(1), torch.rand(2, 3, 8, 8), bounds=(lo, hi))
    assert x.min() >= 0 and x.max() <= 1


def test_weights_receive_no_gradient_while_sampling():
    w = torch.nn.Parameter(torch.ones(3, 4, 4))
    sampler = LangevinSampler(n_steps=3, precision="fp32")
    sampler.sample(lambda x: (w * x).flatten(1).sum(1), torch.zeros(2, 3, 4, 4))
    assert w.grad is None


@pytest.mark.filterwarnings("ignore:model.sampler.precision=bf16")
def test_bf16_path_keeps_chains_fp32_and_close_to_fp32():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    energy = lambda x: torch.relu(conv(x)).flatten(1).sum(1)  # noqa: E731
    x0 = torch.randn(2, 3, 16, 16)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        out[precision] = LangevinSampler(n_steps=3, precision=precision).sample(energy, x0)
    assert out["bf16"].dtype == torch.float32
    rel = (out["bf16"] - out["fp32"]).norm() / (out["fp32"] - x0).norm()
    assert rel < 0.05


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")])
def test_auto_precision_takes_bf16_only_where_the_cpu_runs_it_fast(monkeypatch, avx512_bf16, amx, expected):
    # without AVX512_BF16 or AMX, oneDNN emulates bf16 and a conv runs ~25x slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    sampler = LangevinSampler(n_steps=1)
    assert sampler.precision == "auto"
    assert sampler.precision_on("cpu") == expected
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with sampler.autocast(torch.device("cpu")):
        out = conv(torch.randn(1, 3, 8, 8))
    assert out.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)
    explicit = LangevinSampler(n_steps=1, precision="bf16")  # an explicit choice stands, said once where it is slow
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        assert explicit.precision_on("cpu") == explicit.precision_on("cpu") == "bf16"
    assert len(told) == (0 if expected == "bf16" else 1)
    assert all("model.sampler.precision=bf16" in str(w.message) for w in told)


@pytest.mark.parametrize(
    "kwargs, key",
    [({"step_size": 0}, "step_size"), ({"step_size": -0.1}, "step_size"), ({"n_steps": -1}, "n_steps"),
     ({"sigma": 0}, "sigma"), ({"precision": "fp8"}, "precision")],
)
def test_bad_settings_fail_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"sampler.{key}"):
        LangevinSampler(**kwargs)


def test_sampling_works_under_no_grad():
    # Lightning runs validation and predict without gradients; Langevin must still run there
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    energy = lambda x: torch.relu(conv(x)).flatten(1).sum(1)  # noqa: E731
    x0 = torch.randn(2, 3, 8, 8)
    sampler = LangevinSampler(n_steps=2, precision="fp32")
    with torch.no_grad():
        x = sampler.sample(energy, x0)
    assert not torch.equal(x, x0)


def test_cpu_sampling_keeps_freed_memory_once(monkeypatch):
    calls = []
    monkeypatch.setattr(sampling, "keep_freed_memory", lambda: calls.append(1))
    LangevinSampler(n_steps=2).sample(zero_energy, torch.zeros(1, 3, 4, 4))
    assert calls == [1]  # once per call, not per step


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(sampling, "_freed_memory_kept", None)
    monkeypatch.setenv("FRAME_KEEP_FREED_MEMORY", "0")
    assert sampling.keep_freed_memory() is False


@pytest.mark.skipif(sys.platform != "linux" or ctypes.util.find_library("c") != "libc.so.6", reason="glibc only")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    # without it, glibc mmaps every block over 32 MB afresh: 16,384 page faults per 64 MB tensor
    assert sampling.keep_freed_memory()
    for _ in range(10):  # 64 MB each: the heap grows for the first few, then they are reused
        torch.ones(2**24)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        torch.ones(2**24)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 4096


def test_a_call_takes_its_own_step_size_and_noise_and_leaves_the_sampler_as_it_was():
    def quadratic(x):  # a non-trivial drift, so that the step size shows in the chains
        return -0.1 * x.square().flatten(1).sum(1)

    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    sampler = LangevinSampler(step_size=0.3, n_steps=3, precision="fp32")
    for step_size, noise in [(0.1, True), (0.5, False)]:
        called = sampler.sample(quadratic, x, step_size=step_size, noise=noise, generator=torch.Generator().manual_seed(1))
        built = LangevinSampler(step_size=step_size, n_steps=3, noise=noise, precision="fp32")
        assert torch.equal(called, built.sample(quadratic, x, generator=torch.Generator().manual_seed(1)))
        assert sampler.last_trace["move_rms"] == built.last_trace["move_rms"]
    assert (sampler.step_size, sampler.noise, sampler.n_steps) == (0.3, True, 3)
    assert not torch.equal(sampler.sample(quadratic, x, generator=torch.Generator().manual_seed(1)), called)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"step_size": 0}, r"^model\.sampler\.step_size must be a number > 0, got 0"),
    ({"step_size": float("inf")}, r"^model\.sampler\.step_size must be a number > 0"),
    ({"n_steps": -1}, r"^model\.sampler\.n_steps must be an integer >= 0"),
    ({"sigma": 0}, r"^model\.sampler\.sigma must be a number > 0"),
])
def test_bad_settings_name_their_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LangevinSampler(**kwargs)
    if "sigma" not in kwargs:  # the same check for a call's own value
        what = "the Langevin step size" if "step_size" in kwargs else "the number of Langevin steps"
        with pytest.raises(ValueError, match=rf"^{what} must be"):
            LangevinSampler().sample(zero_energy, torch.zeros(1, 1, 2, 2), **kwargs)
