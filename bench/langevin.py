"""Langevin step cost: a plain fp32 loop vs our sampler, against the machine's measured peak.

    python bench/langevin.py                    # the full table (a few minutes on 2 CPU cores)
    python bench/langevin.py --quick            # fewer repeats, one step per repeat
    python bench/langevin.py --sizes 128 224 --repeats 5
    python bench/langevin.py --device cuda      # on a GPU

One Langevin step (eq. 16) = forward of the truncated VGG-16 + gradient of f(I; w) with respect
to the chains + the update. Cases (VGG weights from ``--source``, default the Caffe ones):

* ``main``: the main job's energy, conv1_1 + conv3_3 non-stationary (eq. 9), 32 chains, 64 px;
* ``objects``: VGG-16 up to conv3_3 and up to conv4_3, non-stationary energy (eq. 9), 16 chains,
  at each of ``--sizes`` (64, 128, 224 px);
* ``texture``: the stack conv1_2 + conv2_2 + conv3_3 + conv4_3, stationary energy (eq. 10), at
  224 px with 1 and 4 chains.

Two ways to run the same steps on the same energy (weights w ~ N(0, 1e-3^2)):

* (a) ``plain``: the obvious loop, fp32, NCHW: ``U = -f(x).sum() + |x|^2 / 2 sigma^2;
  U.backward(); x = x - delta^2/2 x.grad + delta z``;
* (b) ``ours``: ``frame.sampling.LangevinSampler`` with the model configs' defaults
  (``precision=auto``: bf16 where the device runs it fast, else fp32; ``channels_last=True``),
  one ``sample`` call of ``--steps`` steps.

FLOPs per step are counted analytically: every 3x3 conv up to the deepest tap costs
``2 * H * W * C_out * C_in * 9`` FLOPs per image forward (a MAC = 2 FLOPs) and the same again
for its gradient with respect to its input (a transposed conv; no weight gradient is taken), so
a step is 2x the forward conv FLOPs. ReLU, pooling, the energy and the update are not counted.
GFLOP/s = those FLOPs / measured time. The peak is measured in the same process: a large square
matmul in fp32 and in bf16, and, for reference, a channels-last 3x3 conv 256->256 (VGG's conv3_2
at 224 px) in bf16 and fp32. ``%peak`` = our GFLOP/s / the matmul peak of the precision ours runs in
(bf16, or fp32 where ``auto`` finds bf16 emulated); ``%conv`` = our GFLOP/s / that conv's in the same
precision.

All plain loops run before any of ours: our sampler switches the process's allocator to reuse
freed memory (``frame.sampling.keep_freed_memory``), and the plain loop should run with glibc's
defaults, as a script of its own would.

Times are medians over ``--repeats`` repeats of ``--steps`` steps each, after one warm-up
repeat. Memory: the process's peak resident set during the case minus its resident set before
(Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``); on CUDA
``torch.cuda.max_memory_allocated`` minus the allocation before. The last line is a one-line
summary. Timings are only meaningful on an otherwise idle machine: the 1-minute load average at
start and end is printed (``/proc/loadavg``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frame.energies import NonStationaryEnergy, StationaryEnergy  # noqa: E402
from frame.nets.vgg import VGG16_LAYERS, VGG16Features, build_features  # noqa: E402
from frame.progress import progress_bar  # noqa: E402
from frame.sampling import LangevinSampler  # noqa: E402

TEXTURE_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3")
MAIN_JOB = "main 1_1+3_3 64px x32"


# ----------------------------------------------------------------------------- measuring


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


class PeakMemory:
    """Peak memory of a block above what was in use before it (MB)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @staticmethod
    def _status(key: str) -> int:
        match = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(match.group(1)) * 1024 if match else 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            try:  # hand freed heap back to the OS first, so that reused memory counts again
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:  # pragma: no cover - not glibc
                pass
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:  # pragma: no cover
                pass
            self.before = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = self._status("VmHWM")
        self.mb = max(peak - self.before, 0) / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of fn, after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak(dtype: torch.dtype, n: int, device: torch.device, repeats: int) -> float:
    """GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = statistics.median(timed(lambda: torch.mm(a, b), device, repeats))
    return 2 * n**3 / seconds / 1e9


def conv_peak(device: torch.device, repeats: int, dtype: torch.dtype = torch.bfloat16) -> float:
    """GFLOP/s of a channels-last 3x3 conv 256 -> 256 on 16 x 56 x 56 (VGG's conv3_2 at 224 px)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device, dtype)
    conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(16, 256, 56, 56, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        seconds = statistics.median(timed(lambda: conv(x), device, repeats))
    return 2 * 16 * 56 * 56 * 256 * 256 * 9 / seconds / 1e9


def step_flops(layers: tuple[str, ...], size: int, batch: int) -> float:
    """Forward + input-gradient conv FLOPs of one step (2x the forward conv FLOPs)."""
    flops, h, c = 0, size, 3
    for module in build_features(max(VGG16_LAYERS[name] for name in layers) + 1):
        if isinstance(module, torch.nn.Conv2d):
            flops += 2 * h * h * module.out_channels * c * 9
            c = module.out_channels
        elif isinstance(module, torch.nn.MaxPool2d):
            h //= 2
    return 2 * flops * batch


# ----------------------------------------------------------------------------- the two loops


def plain_steps(energy, x: torch.Tensor, n_steps: int, delta: float = 0.3, sigma: float = 1.0) -> torch.Tensor:
    """(a) The obvious fp32 loop of eq. (16)."""
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        potential = -energy(x).sum() + (x**2).sum() / (2 * sigma**2)
        potential.backward()
        with torch.no_grad():
            x = x - 0.5 * delta**2 * x.grad + delta * torch.randn_like(x)
    energy.zero_grad(set_to_none=True)
    return x.detach()


@dataclass
class Case:
    name: str
    layers: tuple[str, ...]
    size: int
    chains: int
    stationary: bool


def cases(sizes: list[int], texture: bool) -> list[Case]:
    out = [Case(MAIN_JOB, ("conv1_1", "conv3_3"), 64, 32, False)]  # the main job's energy (conf/model/nonstationary.yaml)
    out += [
        Case(f"{layer} {size}px x16", (layer,), size, 16, False)
        for layer in ("conv3_3", "conv4_3")
        for size in sizes
    ]
    if texture:
        out += [Case(f"tex1_2..4_3 224px x{n}", TEXTURE_LAYERS, 224, n, True) for n in (1, 4)]
    return out


def build_energy(case: Case, source: str, device: torch.device):
    extractor = VGG16Features(case.layers, source=source)
    energy = StationaryEnergy(extractor) if case.stationary else NonStationaryEnergy(extractor, case.size)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in energy.weights.values():
            w.copy_(1e-3 * torch.randn(w.shape, generator=g))
    return energy.to(device)


def time_case(case: Case, label: str, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """(seconds per step, peak MB) of `label` ("plain" or "ours") on `case`."""
    energy = build_energy(case, args.source, device)
    x0 = (torch.randn(case.chains, 3, case.size, case.size, generator=torch.Generator().manual_seed(1)) * 20).to(device)
    if label == "plain":
        fn = lambda: plain_steps(energy, x0, args.steps)  # noqa: E731
    else:
        sampler = LangevinSampler(step_size=0.3, sigma=1.0, precision=args.precision, channels_last=True)
        gen = torch.Generator(device=device).manual_seed(0)
        fn = lambda: sampler.sample(energy, x0, n_steps=args.steps, generator=gen)  # noqa: E731
    with PeakMemory(device) as mem:
        times = timed(fn, device, args.repeats)
    return statistics.median(times) / args.steps, mem.mb


def profile_case(case: Case, args: argparse.Namespace, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity, profile

    energy = build_energy(case, args.source, device)
    x0 = torch.randn(case.chains, 3, case.size, case.size, device=device) * 20
    sampler = LangevinSampler(step_size=0.3, sigma=1.0, precision=args.precision, channels_last=True)
    sampler.sample(energy, x0, n_steps=1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        sampler.sample(energy, x0, n_steps=args.steps)
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25))


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median), after one warm-up")
    p.add_argument("--steps", type=int, default=2, help="Langevin steps per repeat")
    p.add_argument("--quick", action="store_true", help="2 repeats of 1 step; a couple of minutes on 2 cores")
    p.add_argument("--no-texture", action="store_true", help="skip the texture-stack cases")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="our sampler's precision (auto: bf16 where this device runs it fast)")
    p.add_argument("--source", default="caffe", help="VGG weights (caffe; random if none cached)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--matmul-size", type=int, default=4096)
    p.add_argument("--profile", metavar="CASE", help="print a torch.profiler table for the case named CASE and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = 2, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    todo = cases(args.sizes, texture=not args.no_texture)
    if args.profile:
        profile_case(next(c for c in todo if c.name == args.profile), args, device)
        return

    load0 = loadavg()
    print(f"device {device} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"mkldnn {torch.backends.mkldnn.is_available()} | weights {args.source} | "
          f"repeats {args.repeats} x {args.steps} steps | load avg (1 min) at start {load0:.2f}")
    peaks = {
        "fp32": matmul_peak(torch.float32, args.matmul_size, device, args.repeats),
        "bf16": matmul_peak(torch.bfloat16, args.matmul_size, device, args.repeats),
        "conv": conv_peak(device, args.repeats),
        "conv32": conv_peak(device, args.repeats, torch.float32),
    }
    print(f"peak ({args.matmul_size}^3 matmul): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
          f"3x3 conv 256->256 @56px x16 (channels-last): bf16 {peaks['conv']:.0f}, fp32 {peaks['conv32']:.0f} GFLOP/s")
    precision = LangevinSampler(precision=args.precision).precision_on(device)
    peak, conv = (peaks["bf16"], peaks["conv"]) if precision == "bf16" else (peaks["fp32"], peaks["conv32"])
    ours = f"ours ({precision}+cl)"
    header = (f"{'case':<22} {'GFLOP/step':>10} {'plain ms':>9} {ours + ' ms':>17} {'speed-up':>8} "
              f"{'plain GF/s':>10} {'ours GF/s':>9} {'%peak':>6} {'%conv':>6} {'plain MB':>8} {'ours MB':>8}")
    print(header)
    print("-" * len(header))
    # all plain loops first: our sampler changes process-wide allocator settings
    # (frame.sampling.keep_freed_memory) that the plain loop must not inherit
    plain = {case.name: time_case(case, "plain", args, device) for case in todo}
    rows = []
    for case in progress_bar(todo, "cases", unit="case"):
        (t_plain, mb_plain), (t_ours, mb_ours) = plain[case.name], time_case(case, "ours", args, device)
        row = {"case": case.name, "gflop": step_flops(case.layers, case.size, case.chains) / 1e9,
               "plain": t_plain, "ours": t_ours, "plain_mem": mb_plain, "ours_mem": mb_ours}
        rows.append(row)
        gf_plain, gf_ours = row["gflop"] / row["plain"], row["gflop"] / row["ours"]
        print(f"{row['case']:<22} {row['gflop']:>10.1f} {row['plain'] * 1e3:>9.0f} {row['ours'] * 1e3:>17.0f} "
              f"{row['plain'] / row['ours']:>7.2f}x {gf_plain:>10.0f} {gf_ours:>9.0f} "
              f"{100 * gf_ours / peak:>5.0f}% {100 * gf_ours / conv:>5.0f}% "
              f"{row['plain_mem']:>8.0f} {row['ours_mem']:>8.0f}", flush=True)
    load1 = loadavg()
    big = [r for r in rows if any(f" {s}px" in r["case"] for s in (128, 224))]
    scope = "at 128/224px (objects and texture stack)" if big else "on every case (none at 128/224px)"
    big = big or rows
    speedups = [r["plain"] / r["ours"] for r in big]
    fracs = [r["gflop"] / r["ours"] / peak for r in big]
    print(f"load avg (1 min) at end {load1:.2f}")
    print(f"SUMMARY {device}: {scope} ours is {min(speedups):.2f}-{max(speedups):.2f}x the plain fp32 loop and "
          f"{100 * min(fracs):.0f}-{100 * max(fracs):.0f}% of the {precision} matmul peak ({peak:.0f} GFLOP/s; "
          f"fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f}); load {load0:.2f}->{load1:.2f}")


if __name__ == "__main__":
    main()
