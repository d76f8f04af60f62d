"""The gallery: what the showcase presets make, one figure each, and a table of how good and how long.

    python bench/gallery.py                          # trains every preset (hours on 2 CPU cores)
    python bench/gallery.py --only brick,tiled_texture
    python bench/gallery.py --runs main=outputs/train/runs/<run> --only main   # reuse a run folder
    python bench/gallery.py --quick --out /tmp/gallery                         # a few steps each: a smoke test

Per preset (``PRESETS``): trains it with ``frame.train`` (CSV logger, runs under ``--log-dir``)
unless ``--runs`` gives its run folder, then writes ``<out>/<preset>.png``: the training images
(left) beside the model's chains (right); the seamless texture shows one chain tiled 2 x 2, the
recovery example rows of original | masked | recovered. ``<out>/results.md`` holds the table:
preset, paper figure, wall time of the training with the load average (2 cores, shared), and the
headline metrics of ``frame.evaluate`` (the chains against the training images) with their floor
(real images) and ceiling (noise); VGG-16 feature distances, not Inception FID. The figures are
shrunk until all of them fit ``--budget`` bytes (2 MB). Presets whose data is research data take
it from ``--data`` (else the embedded images their header names).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import frame  # noqa: E402
from frame.callbacks.samples import side_by_side  # noqa: E402
from frame.data import ImageDataModule  # noqa: E402
from frame.grids import make_grid, to_uint8  # noqa: E402
from frame.progress import progress_bar, say  # noqa: E402
from frame.recovery.masks import square_masks  # noqa: E402
from frame.runs import data_config  # noqa: E402


@dataclass(frozen=True)
class Preset:
    name: str
    overrides: tuple[str, ...]
    paper: str
    what: str
    #: a folder below --data that replaces the preset's embedded images (research data)
    data: str | None = None
    #: grid (training | chains), tiled (a chain 2 x 2) or recovery (original | masked | recovered)
    layout: str = "grid"
    #: what --quick adds to QUICK (one chain per image of a minibatch: as many images as chains)
    quick: tuple[str, ...] = ()


PRESETS = (
    Preset("main", ("model=nonstationary", "data=objects"), "Fig. 5, eq. (9)",
           "non-stationary FRAME on VGG-16 conv1_1 + conv3_3, the 100 LFW faces of scikit-image"),
    Preset("brick", ("model=stationary", "data=texture"), "Fig. 6, eq. (10)", "stationary FRAME, one texture (brick)"),
    Preset("fig6_textures", ("experiment=fig6_textures",), "Fig. 6, eq. (10)", "stationary FRAME at 224 px, four VGG-16 layers"),
    Preset("fig8_hybrid_textures", ("experiment=fig8_hybrid_textures",), "Fig. 8", "one model of two textures (brick, gravel)"),
    Preset("scratch_faces", ("experiment=scratch_faces",), "Fig. 12, Table 1", "a 5-layer ConvNet learned from scratch on faces",
           data="faces", quick=("data.batch_size=2",)),
    Preset("vgg_recovery", ("experiment=vgg_recovery",), "Table 2 (Section 9)", "holes recovered by the model learned for it",
           data="faces", layout="recovery", quick=("data.batch_size=2",)),
    Preset("linear_texture", ("experiment=frame_gray_textures", "data.embedded=brick"), "Section 3, eq. (5)",
           "linear FRAME: histograms of 40 Gabor/DoG filters, grey"),
    Preset("tiled_texture", ("model=stationary", "data=texture", "model.energy.extractor.padding=circular"),
           "Fig. 6 model, circular filters", "a texture that tiles without seams (one chain shown 2 x 2)", layout="tiled"),
)
#: a few tiny steps on random filters (the ``debug=fast`` group), on a 32 px canvas
QUICK = ("debug=fast", "model.canvas_size=32")
#: the metrics shown in the table, in this order, where frame.evaluate gives them
HEADLINE = ("c2st_acc", "face_auc", "kid", "coverage", "gram_rel", "swd_rel")
MAX_SIDE = 512
MIN_SIDE = 320  # figures smaller than this are enlarged (nearest neighbour)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def train(preset: Preset, args: argparse.Namespace) -> tuple[Path, str]:
    """The preset's run folder, trained now, and its wall time with the load average."""
    overrides = [*preset.overrides, "logger=csv", f"paths.log_dir={args.log_dir}"]
    if preset.data and args.data is not None:
        overrides.append(f"data.root={args.data / preset.data}")
    if args.quick:
        overrides += [*QUICK, *preset.quick]
    before, start = load(), time.perf_counter()
    run = frame.train(overrides)
    minutes = (time.perf_counter() - start) / 60
    return run, f"{minutes:.1f} min (load {before} -> {load()})"


def training_images(run: Path) -> torch.Tensor:
    """The run's training images, rebuilt from its plain data keys (``frame.runs``)."""
    datamodule = ImageDataModule(**data_config(run))
    datamodule.setup()
    return datamodule.observed_images()


def recovery(model: frame.Model, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four training images, their holes (a centred-at-random square of 0.4 of the side) and the recovered images."""
    images = observed[:4]
    missing = square_masks(len(images), tuple(images.shape[-2:]), 0.4, generator=torch.Generator().manual_seed(0))
    return images, missing, model.inpaint(images, missing)


def figure(preset: Preset, observed: torch.Tensor, chains: torch.Tensor,
           recovered: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The preset's figure ``[3, H, W]`` in [0, 1] (see the module docstring)."""
    if preset.layout == "tiled":
        return side_by_side(observed[:1], make_grid(chains[:1].repeat(4, 1, 1, 1), nrow=2, padding=0)[None])
    if recovered is not None:
        images, missing, result = recovered
        holes = torch.where(missing.expand_as(images), torch.ones_like(images), images)
        return make_grid(torch.stack([images, holes, result], 1).flatten(0, 1), nrow=3, pad_value=1.0)
    return side_by_side(observed[:8], chains[:16])


def png(grid: torch.Tensor, scale: float) -> bytes:
    """The figure as PNG bytes, its longer side at most ``MAX_SIDE * scale`` px; a small one (25 px faces) enlarged
    by a whole factor, each pixel a visible block, so the page shows it at a readable size."""
    image = Image.fromarray(to_uint8(grid))
    longest = max(image.size)
    target = max(32, int(MAX_SIDE * scale))
    factor = min(MIN_SIDE // longest + 1, target // longest) if longest < MIN_SIDE else 1
    if factor > 1:  # within the size the budget allows
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    elif longest > target:
        image = image.resize((round(image.width * target / longest), round(image.height * target / longest)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def headline(quality: dict, extra: dict[str, float]) -> str:
    """Up to three metrics: value (floor real, ceiling noise)."""
    parts = [f"{name} {quality[name].value:.3g} (floor {quality[name].floor:.3g}, ceiling {quality[name].ceiling:.3g})"
             for name in HEADLINE if name in quality][:3]
    parts += [f"{name} {value:.3g}" for name, value in extra.items()]
    return "; ".join(parts) or "–"


def judge(preset: Preset, run: Path, args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """The figure and the headline metrics of a run folder."""
    model = frame.load(run / "checkpoints" / "last.ckpt")
    chains = model.sample(len(model.module.buffer.chains), steps=0)  # the saved chains, as they are
    judged = chains[torch.arange(max(len(chains), 8)) % len(chains)]  # objects need 6 or more: repeated in quick runs
    observed = training_images(run)
    recovered = recovery(model, observed) if preset.layout == "recovery" else None
    extra = {}
    if recovered is not None:
        images, missing, result = recovered
        error = (result - images).abs().mean(1, keepdim=True)[missing]
        extra["recovery error (mean abs. in the 4 holes shown, 0-1)"] = float(error.mean())
    reference = observed[:24] if args.quick else observed
    quick = {"vgg_source": "random", "n_crops": 16, "c2st_epochs": 2} if args.quick else {}  # every measure, a few epochs
    quality = frame.evaluate(judged, reference, **quick)
    return figure(preset, observed, chains, recovered), headline(quality, extra)


def write(figures: dict[str, torch.Tensor], out: Path, budget: int) -> dict[str, int]:
    """Writes ``<out>/<name>.png`` for every figure, shrunk together until they fit ``budget`` bytes."""
    scale = 1.0
    while True:
        encoded = {name: png(grid, scale) for name, grid in figures.items()}
        if sum(map(len, encoded.values())) <= budget or scale < 0.1:
            break
        scale *= 0.8
    for name, data in encoded.items():
        (out / f"{name}.png").write_bytes(data)
    return {name: len(data) for name, data in encoded.items()}


def table(rows: list[tuple[Preset, str, str]], sizes: dict[str, int], quick: bool) -> str:
    lines = [
        "# Gallery", "",
        "Written by `python bench/gallery.py`" + (" --quick (a few steps on random filters: a smoke test)" if quick else "")
        + f" on {os.cpu_count()} cores. Each figure: the training images (left) beside the model's chains (right).",
        "Metrics: `frame.evaluate`, the chains against the training images, each with its floor (real images) and ceiling "
        "(noise); VGG-16 feature distances, not Inception FID.", "",
        "| preset | paper | what | wall time (2 cores, load) | headline metrics |", "|---|---|---|---|---|",
    ]
    lines += [f"| [{p.name}]({p.name}.png) | {p.paper} | {p.what} | {wall} | {metrics} |" for p, wall, metrics in rows]
    lines += [""] + [f"![{p.name}]({p.name}.png)" for p, _, _ in rows if p.name in sizes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help=f"comma-separated presets (default: all: {','.join(p.name for p in PRESETS)})")
    parser.add_argument("--runs", nargs="*", default=[], metavar="PRESET=RUN_DIR", help="reuse these run folders instead of training")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery", help="folder for the figures and results.md")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "outputs" / "gallery", help="paths.log_dir of the training runs")
    parser.add_argument("--data", type=Path, default=None, help="research data root (faces/ for the face presets)")
    parser.add_argument("--quick", action="store_true", help="a few steps on random filters per preset, judged by random weights")
    parser.add_argument("--budget", type=int, default=2_000_000, help="bytes all the figures may take")
    args = parser.parse_args(argv)
    known = {p.name: p for p in PRESETS}
    names = args.only.split(",") if args.only else list(known)
    reuse = dict(item.split("=", 1) for item in args.runs)
    unknown = [name for name in [*names, *reuse] if name not in known]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, figures = [], {}
    for name in progress_bar(names, "presets", unit="preset"):
        preset = known[name]
        if name in reuse:
            run, wall = Path(reuse[name]), "(given run)"
        else:
            run, wall = train(preset, args)
        figures[name], metrics = judge(preset, run, args)
        rows.append((preset, wall, metrics))
        say(f"{name}: {wall}; {metrics}")
    sizes = write(figures, args.out, args.budget)
    (args.out / "results.md").write_text(table(rows, sizes, args.quick))
    total = sum(sizes.values())
    print(f"wrote {len(sizes)} figures ({total / 1e6:.2f} MB) and {args.out / 'results.md'}")
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
