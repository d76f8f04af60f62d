"""Linear-filter FRAME (Section 3) and the Julesz ensemble (Appendix B) on the original FRAME textures.

    python bench/linear_frame.py textures [--names grass_obs.bmp ...] [--iterations 60]
    python bench/linear_frame.py julesz --stats linear|vgg [--names ...]
    python bench/linear_frame.py objects [--iterations 60]
    python bench/linear_frame.py vgg-pursuit --names grass_obs.bmp [--filters 8 --iterations 30]
    (filter pursuit: python -m frame.cli.pursuit --input <file> --out <folder>)

``textures`` learns ``experiment=frame_gray_textures`` on each texture of --root (128 px) by
Algorithm 1 in chunks of 10 iterations, and prints after the last: the mean over filters of the
histogram gap d_k = 1/2 ||H_obs,k - H_syn,k||_1 (soft bins as learned, and hard bins), the relative
gap ||H_obs - H_syn|| / ||H_obs|| the training logs, the minutes to the first d < 0.05, and the
Gram / sliced Wasserstein texture distances of ``frame.eval`` (VGG-16 conv1_1..conv5_1, 64 px crops;
floor = real vs real). ``julesz`` samples the Julesz ensemble of the same statistics (linear
histograms, or the spatial means of VGG conv1_2, conv2_2, conv3_3 on grey chains) from white noise with
the texture's mean and contrast, and prints the
same columns, next to the learned model's row when ``textures`` has run. ``objects`` learns
``experiment=linear_objects`` (eq. 6-7 on the grey LFW faces). ``vgg-pursuit`` runs filter pursuit over
the VGG channels of ``model=stationary`` (``frame.pursuit.ChannelPursuit``) on the first of --names. Grids and rows go to --out.
The textures are research data: read from --root, never copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from torchvision.utils import save_image

from frame.overrides import path_override
from frame.progress import progress_bar  # noqa: E402
from frame.run import build_model

ROOT = Path(__file__).resolve().parents[1]
TEXTURES = ROOT.parent / "shared" / "data" / "textures" / "frame_gray"
VGG_LAYERS = ["conv1_2", "conv2_2", "conv3_3"]


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def fit(model, datamodule, iterations: int) -> None:
    pl.Trainer(max_steps=iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=[]).fit(model, datamodule=datamodule)


@torch.no_grad()
def histogram_gaps(energy, observed, chains) -> dict[str, float]:
    """Mean over filters of d_k (soft and hard bins) and the relative gap of the soft histograms."""
    layer = energy.extractor.layers[0]
    r_obs, r_syn = energy.features(observed)[layer], energy.features(chains)[layer]
    out = {}
    for kind, stat in (("soft", energy.statistic), ("hard", energy.hard_statistic)):
        h_obs, h_syn = stat(layer, r_obs).mean(0), stat(layer, r_syn).mean(0)
        out[f"tv_{kind}"] = float(0.5 * (h_obs - h_syn).abs().sum(-1).mean())
        if kind == "soft":
            out["gap_rel"] = float((h_obs - h_syn).norm() / h_obs.norm())
    return out


def texture_distances(samples, reference) -> dict[str, float]:
    """Gram / SWD distances of frame.eval (value and the real-vs-real floor); {} without it."""
    try:
        from frame.eval import Evaluator
    except ImportError:
        return {}
    scores = Evaluator(reference, kind="texture")(samples)
    return {f"{m}{suffix}": getattr(scores[m], attr) for m in ("gram_rel", "swd_rel")
            for suffix, attr in (("", "value"), ("_floor", "floor"))}


def row(name: str, method: str, minutes: float, values: dict[str, float]) -> str:
    cells = [f"{values.get(k, float('nan')):.4f}" for k in ("tv_soft", "tv_hard", "gap_rel", "gram_rel", "gram_rel_floor",
                                                            "swd_rel", "swd_rel_floor")]
    below = values.get("minutes_below_0.05")
    return f"| {name} | {method} | {minutes:.1f} | " + " | ".join(cells) + f" | {'-' if below is None else f'{below:.1f}'} |"


HEADER = ("| texture | method | minutes | d soft | d hard | gap rel | Gram | Gram floor | SWD | SWD floor | min to d<0.05 |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def textures(args) -> None:
    print(HEADER)
    for name in args.names:
        cfg = config("experiment=frame_gray_textures", path_override("data.root", args.root / name), "vgg_source=caffe")
        datamodule = hydra.utils.instantiate(cfg.data)
        datamodule.setup("fit")
        model = build_model(cfg.model)
        observed = model.to_input(datamodule.images)
        start, below = time.perf_counter(), None
        for done in progress_bar(range(10, args.iterations + 1, 10), name, unit="x10 it"):
            fit(model, datamodule, 10)
            gaps = histogram_gaps(model.energy, observed, model.buffer.chains)
            minutes = (time.perf_counter() - start) / 60
            if below is None and gaps["tv_hard"] < 0.05:
                below = minutes
            print(f"  {name} {done} iterations {minutes:.1f} min {gaps}", flush=True)
        samples = model.to_images(model.buffer.chains).cpu()
        values = {**gaps, **texture_distances(samples, datamodule.images), "minutes_below_0.05": below}
        save_image(torch.cat([datamodule.images.mean(1, keepdim=True).expand(-1, 3, -1, -1), samples]),
                   args.out / f"learned_{Path(name).stem}.png")
        (args.out / f"learned_{Path(name).stem}.json").write_text(json.dumps({"minutes": minutes, **values}))
        print(row(name, "learned FRAME (eq. 5)", minutes, values), flush=True)


def julesz(args) -> None:
    from frame.energies import LinearStationaryEnergy, StationaryEnergy
    from frame.julesz import JuleszSampler
    from frame.nets import FilterBank, VGG16Features

    print(HEADER)
    for name in args.names:
        cfg = config("experiment=frame_gray_textures", path_override("data.root", args.root / name))
        datamodule = hydra.utils.instantiate(cfg.data)
        datamodule.setup("fit")
        if args.stats == "linear":
            energy = LinearStationaryEnergy(FilterBank(), bins=16)
        else:
            energy = StationaryEnergy(VGG16Features(VGG_LAYERS, source="caffe", grey=True))  # grey chains
        sampler = JuleszSampler(eps=args.eps, levels=args.levels, steps_per_level=args.steps_per_level,
                                final_steps=args.final_steps)
        observed = energy.input_space.to_input(datamodule.images)
        energy.fit(observed)
        h_obs = sampler.observed_statistics(energy, observed)
        start = time.perf_counter()
        chains = sampler.sample(energy, observed, generator=torch.Generator().manual_seed(0))
        minutes = (time.perf_counter() - start) / 60
        if args.stats == "linear":
            values = histogram_gaps(energy, observed, chains)
        else:
            values = {"gap_rel": sampler.gap(energy, chains, h_obs)}
        samples = energy.input_space.to_images(chains).clamp(0, 1).cpu()
        values.update(texture_distances(samples, datamodule.images))
        save_image(torch.cat([datamodule.images.mean(1, keepdim=True).expand(-1, 3, -1, -1), samples]),
                   args.out / f"julesz_{args.stats}_{Path(name).stem}.png")
        learned = args.out / f"learned_{Path(name).stem}.json"
        if learned.exists():
            saved = json.loads(learned.read_text())
            print(row(name, "learned FRAME (eq. 5)", saved.pop("minutes"), saved))
        print(row(name, f"Julesz, {args.stats} statistics", minutes, values), flush=True)


def objects(args) -> None:
    cfg = config("experiment=linear_objects")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    model = build_model(cfg.model)
    observed = model.to_input(datamodule.images)
    start = time.perf_counter()
    for done in range(10, args.iterations + 1, 10):
        fit(model, datamodule, 10)
        energy = model.energy
        with torch.no_grad():
            h_obs = energy.statistics(energy.features(observed))["filters"].mean(0)
            h_syn = energy.statistics(energy.features(model.buffer.chains))["filters"].mean(0)
        print(f"  {done} iterations {(time.perf_counter() - start) / 60:.1f} min gap_rel "
              f"{float((h_obs - h_syn).norm() / h_obs.norm()):.4f}", flush=True)
    save_image(torch.cat([datamodule.images[:8].mean(1, keepdim=True).expand(-1, 3, -1, -1),
                          model.to_images(model.buffer.chains[:8]).cpu()]), args.out / "objects.png", nrow=8)


def vgg_pursuit(args) -> None:
    """Filter pursuit over the VGG channels of the deep stationary model (eq. 10), on one texture."""
    from frame.pursuit import ChannelPursuit, free_channels

    name = args.names[0]
    cfg = config("model=stationary", "data=texture", "data.embedded=null", path_override("data.root", args.root / name),
                 f"data.image_size={args.size}", "data.grayscale=true", "vgg_source=caffe", f"model.optimizer.lr={args.lr}")

    def make_model(channels):
        model = build_model(cfg.model)
        return model if channels is None else free_channels(model, channels)

    datamodule = hydra.utils.instantiate(cfg.data)
    pursuit = ChannelPursuit(make_model, datamodule, iterations=args.iterations, average=args.average)
    observed = datamodule.images[:1].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    out = args.out / f"vgg_pursuit_{Path(name).stem}"
    out.mkdir(parents=True, exist_ok=True)
    print("| step | channel added | gap picked | unused: mean d | unused: max d | used: mean d | minutes |\n"
          "|---|---|---|---|---|---|---|", flush=True)

    def report(i, step):
        print(f"| {i} | {step.filter} | {step.gap_picked:.4f} | {step.unused_mean:.4f} | {step.unused_max:.4f} | "
              f"{step.used_mean:.4f} | {step.minutes:.2f} |", flush=True)
        save_image(torch.cat([observed, step.samples[:1]]), out / f"step_{i:02d}.png")

    steps = pursuit.run(args.filters, report)
    save_image(torch.cat([observed] + [s.samples[:1] for s in steps]), out / "pursuit.png", nrow=len(steps) + 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["textures", "julesz", "objects", "vgg-pursuit"])
    p.add_argument("--root", type=Path, default=TEXTURES)
    p.add_argument("--names", nargs="+", default=None, help="texture files in --root (default: all)")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--stats", choices=["linear", "vgg"], default="linear")
    p.add_argument("--eps", type=float, default=1.25, help="Julesz gradient step, per unit of the texture's variance")
    p.add_argument("--final-steps", type=int, default=400, help="Julesz steps at T = 0")
    p.add_argument("--levels", type=int, default=4, help="Julesz temperatures with noise")
    p.add_argument("--steps-per-level", type=int, default=50)
    p.add_argument("--filters", type=int, default=8, help="vgg-pursuit: channels to add")
    p.add_argument("--average", type=int, default=5, help="vgg-pursuit: sampler sweeps averaged into H_syn")
    p.add_argument("--size", type=int, default=64, help="vgg-pursuit: image side")
    p.add_argument("--lr", type=float, default=3e-3, help="vgg-pursuit: SGD learning rate (10x the stationary preset's: few weights)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "linear_frame")
    args = p.parse_args()
    args.names = args.names or sorted(f.name for f in args.root.iterdir())
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.manual_seed(0)
    {"textures": textures, "julesz": julesz, "objects": objects, "vgg-pursuit": vgg_pursuit}[args.task](args)


if __name__ == "__main__":
    main()
