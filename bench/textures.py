"""Textures against the peers: four synthesis methods side by side on one fixed suite, one table, one image grid.

    python bench/textures.py --grid docs/gallery/textures_bench.png [--data-root ../shared/data/textures] [--seed 0]
    python bench/textures.py --quick --vgg-source random --out /tmp/tb --grid /tmp/tb/grid.png   # the smoke test

Suite: scikit-image's brick, grass and gravel (grey) and three research textures of --data-root (water, beehive,
bark: colour; read from there, never copied; without them the scikit-image three run alone), each resized to
cover 128 px and centre-cropped, as ``data=texture`` reads them. Methods, each drawing one 128 px image:

- **deep FRAME**: ``model=stationary`` (eq. 10, VGG-16 conv1_2, conv2_2, conv3_3) learned by Algorithm 1 on the
  texture, in colour where the texture is, with circular padding (seamless samples); the sample is the chain.
- **Julesz, VGG**: the Julesz ensemble of the same VGG statistics (Appendix B, ``frame.julesz``, what
  ``frame-julesz --stats vgg`` runs; close to Gatys et al.'s Gram optimisation), here in colour where the
  texture is and with circular padding.
- **Julesz, linear**: the Julesz ensemble of the Gabor/DoG/delta bank's histograms (``frame-julesz``'s
  default statistics, eq. 5; grey only, circular by construction).
- **Portilla-Simoncelli**: a metamer of ``plenoptic.models.PortillaSimoncelli`` (``plenoptic.Metamer`` with
  ``plenoptic.loss.portilla_simoncelli_loss_factory``, Adam, from white noise around the exemplar's mean);
  colour textures in the opponent channels of ``frame.eval.portilla`` (each channel's statistics, no
  cross-channel ones). Periodic by construction (the pyramid works in the Fourier domain).
- **exemplar crops**: the floor, what the exemplar's own crops score.

Columns: wall and CPU time of the method; the held-out accuracy of a two-sample classifier trained from scratch on crops
(``frame.eval.c2st``, 1/2 = indistinguishable); the Portilla-Simoncelli distance (``frame.eval.portilla``: mean
log distance in the exemplar's crop-to-crop spreads, ~0 for the exemplar's crops, log 2 = 0.69 for twice as
far); Gram and sliced Wasserstein distances on VGG-16 conv1_1..conv5_1 (``frame.eval.texture``); and the seam
error of a 2x2 tiling (:func:`seam_error`, 1 = seamless). Crops: half the side (64 px), from the one sample and
from the exemplar. Budgets are fixed counts (deterministic given --seed), sized so that each method takes
about the same CPU time on a grey texture (a colour metamer costs 2-3x); the header line gives them. Progress lines go to stdout, the grid (a row per
texture, a column per method after the exemplar) to --grid, the rows as JSON and the samples to --out; the
research textures' rows to a grid of their own in --out (no figure of research data in the repository).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # plenoptic's per-iteration bars; this script prints progress lines

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torch import Tensor  # noqa: E402

from frame.cli.julesz import EPS, VGG_LAYERS  # noqa: E402
from frame.data.images import embedded_images, load_images, to_tensor  # noqa: E402
from frame.eval import Evaluator, VGGFeatures  # noqa: E402
from frame.eval.c2st import c2st  # noqa: E402
from frame.eval.portilla import CORR_WIDTH, OPPONENT, is_grey, ps_scales  # noqa: E402
from frame.eval.report import C2ST_CROP  # noqa: E402
from frame.eval.texture import random_crops  # noqa: E402
from frame.grids import make_grid, to_uint8  # noqa: E402
from frame.overrides import path_override  # noqa: E402
from frame.run import build_model, prepare_data  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data" / "textures"
GRID = ROOT / "docs" / "gallery" / "textures_bench.png"
EMBEDDED = ("brick", "grass", "gravel")
#: research textures, relative to --data-root
RESEARCH = {"water": "water/train0001.jpg", "beehive": "beehive/1045531_154218094_2.jpg", "bark": "bark/001.jpg"}
METHODS = ("deep FRAME", "Julesz, VGG", "Julesz, linear", "Portilla-Simoncelli")
FLOOR = "exemplar crops"
MAX_GRID_BYTES = 1_000_000


@dataclass(frozen=True)
class Budget:
    """Fixed work per method (deterministic, unlike a wall-time budget)."""

    size: int = 128  # side of the exemplar and the samples
    frame_iterations: int = 30  # deep FRAME: learning iterations (Algorithm 1) ...
    frame_steps: int = 10  # ... of this many Langevin steps each
    vgg_levels: int = 2  # Julesz, VGG: noisy temperatures, Langevin steps at each, L-BFGS evaluations at T = 0
    vgg_steps: int = 25
    vgg_final: int = 200
    linear_levels: int = 4  # Julesz, linear: the same (frame-julesz's defaults)
    linear_steps: int = 50
    linear_final: int = 400
    ps_iterations: int = 1000  # Portilla-Simoncelli: Adam steps
    n_crops: int = 64  # crops per compared set
    c2st_folds: int = 5
    c2st_epochs: int = 30
    frame_overrides: tuple[str, ...] = ()  # deep FRAME: further Hydra overrides (probes)

    def header(self) -> str:
        extra = f" (overrides: {' '.join(self.frame_overrides)})" if self.frame_overrides else ""
        return (f"budgets: deep FRAME {self.frame_iterations} iterations x {self.frame_steps} Langevin steps{extra}; Julesz VGG "
                f"{self.vgg_levels} x {self.vgg_steps} steps + {self.vgg_final} L-BFGS evaluations; Julesz linear "
                f"{self.linear_levels} x {self.linear_steps} + {self.linear_final}; Portilla-Simoncelli {self.ps_iterations} "
                f"Adam steps; {self.size} px, one sample each; {self.n_crops} crops of {self.size // 2} px per set")


QUICK = Budget(size=32, frame_iterations=2, frame_steps=2, vgg_levels=0, vgg_steps=0, vgg_final=4, linear_levels=0,
               linear_steps=0, linear_final=4, ps_iterations=4, n_crops=10, c2st_folds=2, c2st_epochs=1)


@dataclass(frozen=True)
class Texture:
    name: str
    file: Path | None  # None: scikit-image's image of that name


def suite(data_root: Path, quick: bool) -> list[Texture]:
    """The fixed suite; without --data-root, the scikit-image three (one line says so)."""
    textures = [Texture(name, None) for name in EMBEDDED]
    if quick:
        return textures[:1]
    missing = [name for name, file in RESEARCH.items() if not (data_root / file).is_file()]
    if missing:
        print(f"no research textures under {data_root} (--data-root; missing: {', '.join(missing)}): running the scikit-image three")
        return textures
    return textures + [Texture(name, data_root / file) for name, file in RESEARCH.items()]


def read(texture: Texture, size: int, grey: bool = False) -> Tensor:
    """``[1, 3, size, size]`` in [0, 1], resized to cover ``size`` and centre-cropped (``data=texture``'s reading)."""
    images = embedded_images(texture.name) if texture.file is None else load_images([texture.file])
    return to_tensor(images[:1], size, grayscale=grey)


# ---------------------------------------------------------------------- the methods: (texture, budget, seed, vgg source) -> [1, 3, s, s]


def deep_frame(texture: Texture, budget: Budget, seed: int, source: str) -> Tensor:
    """``model=stationary`` learned on the texture (``data=texture`` at the budget's side, circular padding)."""
    data = ["data.embedded=" + texture.name] if texture.file is None else ["data.embedded=null", path_override("data.root", texture.file)]
    overrides = ["model=stationary", "data=texture", *data, f"data.image_size={budget.size}", "model.energy.extractor.padding=circular",
                 f"model.sampler.n_steps={budget.frame_steps}", f"vgg_source={source}", f"seed={seed}", *budget.frame_overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = prepare_data(cfg)
    model = build_model(cfg.model)
    pl.Trainer(max_steps=budget.frame_iterations, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, inference_mode=False).fit(model, datamodule=datamodule)
    with torch.no_grad():
        return model.to_images(model.buffer.chains[:1]).clamp(0, 1).cpu().expand(-1, 3, -1, -1)


def julesz(stats: str, texture: Texture, budget: Budget, seed: int, source: str) -> Tensor:
    """The Julesz ensemble (``frame.julesz``) of VGG means (colour where the texture is) or linear histograms (grey)."""
    from frame.energies import LinearStationaryEnergy, StationaryEnergy
    from frame.julesz import JuleszSampler
    from frame.nets import FilterBank, VGG16Features

    images = read(texture, budget.size)
    if stats == "linear":
        images = read(texture, budget.size, grey=True)[:, :1]
        energy = LinearStationaryEnergy(FilterBank(), bins=16)
        levels, steps, final = budget.linear_levels, budget.linear_steps, budget.linear_final
    else:
        grey = is_grey(images)
        images = images[:, :1] if grey else images
        energy = StationaryEnergy(VGG16Features(list(VGG_LAYERS), source=source, grey=grey, padding="circular"))
        levels, steps, final = budget.vgg_levels, budget.vgg_steps, budget.vgg_final
    sampler = JuleszSampler(eps=EPS[stats], levels=levels, steps_per_level=steps, final_steps=final)
    observed = energy.input_space.to_input(images)
    energy.fit(observed)
    chains = sampler.sample(energy, observed, generator=torch.Generator().manual_seed(seed))
    return energy.input_space.to_images(chains).clamp(0, 1).cpu().expand(-1, 3, -1, -1)


#: Adam's step on the metamer's pixels: 0.02 leaves brick's loss oscillating for 2000 steps, 0.005 settles (bench/README)
PS_LR = 0.005
#: RGB -> opponent channels shifted into [0, 1] (luminance, red-green + 1/2, yellow-blue + 1/2), for plenoptic's range penalty
OPPONENT_SHIFT = torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)


def portilla_simoncelli(texture: Texture, budget: Budget, seed: int, source: str) -> Tensor:
    """A Portilla-Simoncelli metamer (plenoptic), grey or in opponent colour channels."""
    import plenoptic as po

    images = read(texture, budget.size)
    colour = not is_grey(images)
    target = torch.einsum("kc,nchw->nkhw", OPPONENT, images) + OPPONENT_SHIFT if colour else images[:, :1]
    model = po.models.PortillaSimoncelli(target.shape[-2:], n_scales=ps_scales(budget.size), spatial_corr_width=CORR_WIDTH)
    po.remove_grad(model)
    metamer = po.Metamer(target, model, loss_function=po.loss.portilla_simoncelli_loss_factory(model, target))
    generator = torch.Generator().manual_seed(seed)
    start = target.mean((2, 3), keepdim=True) + 0.1 * (torch.rand(target.shape, generator=generator, dtype=target.dtype) - 0.5)
    metamer.setup(start, optimizer_kwargs={"lr": PS_LR, "amsgrad": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Loss has converged": an early stop, which the CPU time shows
        metamer.synthesize(max_iter=budget.ps_iterations)
    out = metamer.metamer.detach()
    if colour:
        out = torch.einsum("kc,nchw->nkhw", torch.linalg.inv(OPPONENT), out - OPPONENT_SHIFT)
    return out.float().clamp(0, 1).expand(-1, 3, -1, -1)


RUN = {
    "deep FRAME": deep_frame,
    "Julesz, VGG": lambda *a: julesz("vgg", *a),
    "Julesz, linear": lambda *a: julesz("linear", *a),
    "Portilla-Simoncelli": portilla_simoncelli,
}


# ---------------------------------------------------------------------- the measures


def seam_error(images: Tensor) -> float:
    """How visible the seams of a 2x2 tiling of each image are: 1 = seamless.

    Tiled 2 x 2, an image meets itself where its right edge touches its left edge and its bottom edge its top;
    the error is the mean absolute difference across those seams (the wrap-around neighbours) over the mean
    absolute difference of the neighbours inside the image (both directions, all channels). A periodic texture
    scores about 1; a crop of a photograph more (its opposite edges do not match).
    """
    *_, inside = _line_steps(images)
    seams = torch.stack([images[..., :, 0] - images[..., :, -1], images[..., 0, :] - images[..., -1, :]]).abs().mean()
    return float(seams / inside)


def _line_steps(images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean absolute step across each column boundary, across each row boundary, and over all of them."""
    dx, dy = (images[..., :, 1:] - images[..., :, :-1]).abs(), (images[..., 1:, :] - images[..., :-1, :]).abs()
    inside = torch.cat([dx.flatten(), dy.flatten()]).mean().clamp_min(1e-8)
    return dx.mean((0, 1, 2)), dy.mean((0, 1, 3)), inside


def seam_band(images: Tensor) -> tuple[float, float]:
    """The 5-95% range of :func:`seam_error`'s ratio over pairs of interior lines (one column boundary, one row
    boundary) of ``images``: where a seamless tiling's error falls by chance (wide for brick, whose mortar lines
    make one line's steps differ from the next's)."""
    columns, rows, inside = _line_steps(images)
    pairs = ((columns[:, None] + rows[None, :]) / 2 / inside).flatten()
    low, high = pairs.quantile(torch.tensor([0.05, 0.95], dtype=pairs.dtype))
    return float(low), float(high)


@dataclass
class Row:
    texture: str
    method: str
    colour: bool
    wall_s: float | None
    cpu_s: float | None  # CPU seconds of the process (all threads): the wall on idle cores
    c2st_acc: float
    ps: float
    gram: float
    swd: float
    seam: float

    def cells(self) -> str:
        wall = "-" if self.wall_s is None else f"{self.wall_s:.0f} ({self.cpu_s:.0f})"
        return (f"| {self.texture} | {self.method} | {'colour' if self.colour else 'grey'} | {wall} | {self.c2st_acc:.2f} | "
                f"{self.ps:.2f} | {self.gram:.3f} | {self.swd:.3f} | {self.seam:.2f} |")


TABLE = ("| texture | method | output | wall s (CPU s) | C2ST acc | PS | Gram | SWD | seam |\n"
         "|---|---|---|---|---|---|---|---|---|")


class Judge:
    """One texture's measures: the evaluator's Gram, SWD and PS rows (floor: exemplar crops) and the classifier on crops."""

    def __init__(self, exemplar: Tensor, budget: Budget, seed: int, source: str) -> None:
        self.budget, self.seed, self.crop = budget, seed, budget.size // 2
        self.exemplar = exemplar
        self.evaluator = Evaluator(exemplar, kind="texture", features=VGGFeatures(source=source), crop_size=self.crop,
                                   n_crops=budget.n_crops, seed=seed, c2st=False)
        self.real = self._crops(exemplar, 1)

    def _crops(self, images: Tensor, salt: int) -> Tensor:
        return random_crops(images, self.crop, self.budget.n_crops, torch.Generator().manual_seed(self.seed * 1000 + salt))

    def _c2st(self, crops: Tensor) -> float:
        return c2st(crops, self.real, folds=self.budget.c2st_folds, epochs=self.budget.c2st_epochs, crop=C2ST_CROP, seed=self.seed).accuracy

    def row(self, texture: str, method: str, samples: Tensor, wall: float, cpu: float) -> Row:
        scores = self.evaluator(samples, c2st=False)
        return Row(texture, method, not is_grey(samples), wall, cpu, self._c2st(self._crops(samples, 2)), scores["ps"].value,
                   scores["gram_rel"].value, scores["swd_rel"].value, seam_error(samples))

    def floor(self, texture: str) -> Row:
        """The exemplar's own crops (another crop set than the one the methods are compared with)."""
        floor, _ = self.evaluator.calibration(self.exemplar)
        return Row(texture, FLOOR, not is_grey(self.exemplar), None, None, self._c2st(self._crops(self.exemplar, 3)), floor["ps"],
                   floor["gram_rel"], floor["swd_rel"], seam_error(self.exemplar))


# ---------------------------------------------------------------------- the grid


def write_grid(rows: list[list[Tensor]], names: list[str], methods: list[str], path: Path) -> int:
    """A PNG, one row per texture (the exemplar, then each method), labelled; grey textures stay grey. Returns its bytes."""
    columns = [FLOOR.split()[0], *methods]
    side, pad, label = rows[0][0].shape[-1], 2, 12
    grid = make_grid(torch.cat([torch.cat(row) for row in rows]), nrow=len(columns), padding=pad, pad_value=1.0)
    body = Image.fromarray(to_uint8(grid))
    left = 6 * max(len(n) for n in names) + 2 * pad
    canvas = Image.new("RGB", (body.width + left, body.height + label), "white")
    canvas.paste(body, (left, label))
    draw = ImageDraw.Draw(canvas)
    for i, column in enumerate(columns):
        draw.text((left + pad + i * (side + pad), 0), column, fill="black")
    for i, name in enumerate(names):
        draw.text((2, label + pad + i * (side + pad) + side // 2 - 5), name, fill="black")
    pixels = np.asarray(canvas).astype(np.int16)
    if not np.abs(pixels - pixels[..., :1]).any():  # every texture grey: one channel
        canvas = canvas.convert("L")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    if path.stat().st_size > MAX_GRID_BYTES:  # colour textures compress badly: a 256-colour palette
        canvas.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


# ---------------------------------------------------------------------- the run


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="research textures (read only; default ../shared/data/textures)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the methods (the classifier always runs on one)")
    p.add_argument("--vgg-source", default="caffe", help="VGG-16 weights of the methods and the measures (random: the smoke test)")
    p.add_argument("--only", nargs="+", default=None, help="these textures of the suite alone")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS, metavar="METHOD", help=f"a subset of {METHODS}")
    p.add_argument("--budget", nargs="+", default=[], metavar="FIELD=N", help="change a budget (e.g. frame_iterations=60; probes)")
    p.add_argument("--frame-override", action="append", default=[], help="a further Hydra override of deep FRAME (probes; repeatable)")
    p.add_argument("--quick", action="store_true", help="brick alone at 32 px with tiny budgets: a smoke test, not a benchmark")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "textures", help="folder of rows.json and samples.pt")
    p.add_argument("--grid", type=Path, default=None, help=f"the image grid (default: in --out; the gallery's is {GRID.relative_to(ROOT)})")
    args = p.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    try:
        changes = {key: int(value) for key, value in (item.split("=", 1) for item in args.budget)}
        budget = replace(budget, **changes, frame_overrides=tuple(args.frame_override))
    except (ValueError, TypeError) as error:
        p.error(f"--budget {' '.join(args.budget)}: FIELD=N with FIELD one of {', '.join(Budget.__dataclass_fields__)} ({error})")
    grid_path = args.grid or args.out / "textures_bench.png"
    torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|eval mode|receptive field).*")
    textures = suite(args.data_root, args.quick and not args.only)
    textures = [t for t in textures if args.only is None or t.name in args.only]
    begin = time.perf_counter()
    print(f"load at start {load()}; threads {args.threads}; seed {args.seed}", flush=True)
    print(budget.header(), flush=True)
    rows, pictures = [], []
    for texture in textures:
        exemplar = read(texture, budget.size)
        judge = Judge(exemplar, budget, args.seed, args.vgg_source)
        texture_rows, texture_pictures = [judge.floor(texture.name)], [exemplar]
        for method in args.methods:
            print(f"{texture.name}: {method} ... (load {load()})", flush=True)
            start, cpu = time.perf_counter(), time.process_time()
            samples = RUN[method](texture, budget, args.seed, args.vgg_source)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            if not torch.isfinite(samples).all():
                raise RuntimeError(f"{texture.name}, {method}: non-finite samples")
            texture_rows.append(judge.row(texture.name, method, samples, wall, cpu))
            texture_pictures.append(samples)
            print(f"  {texture_rows[-1].cells()}  ({(time.perf_counter() - begin) / 60:.1f} min in)", flush=True)
        rows += texture_rows
        pictures.append(texture_pictures)
    # research textures are not to be copied: their rows go to a grid of their own, beside rows.json
    public = [i for i, t in enumerate(textures) if t.file is None]
    size = write_grid([pictures[i] for i in public], [textures[i].name for i in public], list(args.methods), grid_path) if public else 0
    if len(public) < len(textures):
        research = [i for i in range(len(textures)) if i not in public]
        write_grid([pictures[i] for i in research], [textures[i].name for i in research], list(args.methods),
                   args.out / "textures_bench_research.png")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    torch.save({t.name: torch.cat(p) for t, p in zip(textures, pictures)}, args.out / "samples.pt")  # exemplar, then each method
    minutes = (time.perf_counter() - begin) / 60
    print(f"\n{budget.header()}\n{TABLE}\n" + "\n".join(r.cells() for r in rows))
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"wall {minutes:.1f} min, CPU {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min (about the wall on idle cores); load at end {load()}; "
          + (f"grid {grid_path} ({size / 1e3:.0f} kB)" if public else "no scikit-image texture: no --grid"))
    wins = best_per_column(rows)
    for texture, texture_pictures in zip(textures, pictures):
        low, high = seam_band(texture_pictures[0])
        print(f"{texture.name}: " + "; ".join(f"{column} {wins[texture.name][column]}" for column in COLUMNS)
              + f" (seam by chance, the exemplar's interior lines: {low:.2f}-{high:.2f})")
    return 0


COLUMNS = ("cpu_s", "c2st_acc", "ps", "gram", "swd", "seam")


def best_per_column(rows: list[Row]) -> dict[str, dict[str, str]]:
    """Per texture and column, the method with the best value (lowest; C2ST: closest to 1/2; seam: closest to 1)."""
    target = {"c2st_acc": 0.5, "seam": 1.0}
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        if row.method == FLOOR:
            continue
        for column in COLUMNS:
            value = abs(getattr(row, column) - target.get(column, 0.0))
            best = out.setdefault(row.texture, {}).get(column)
            if best is None or value < best[1]:
                out[row.texture][column] = (row.method, value)
    return {t: {c: m for c, (m, _) in columns.items()} for t, columns in out.items()}


if __name__ == "__main__":
    sys.exit(main())
