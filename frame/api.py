"""The Python API: a trained model to sample, score and inpaint with, an evaluation, a training run.

    import frame
    model = frame.load("outputs/train/runs/<run>/checkpoints/last.ckpt")
    images = model.sample(16, steps=100)          # N x 3 x H x W in [0, 1]
    scores = model.score(images)                  # f(I; w) per image (Table 1)
    print(frame.evaluate(images, "lfw_faces"))    # quality table with floors and ceilings

Images in and out are float tensors ``N x 3 x H x W``, RGB, in [0, 1] (a grey model's images
have three equal channels; one-channel images are taken as grey); ``frame.input_space`` maps
them to and from the model's own space (0-255 minus the mean, BGR for the Caffe filters). The
functions build on what the commands use: ``frame.run.checkpoints.load_model``, ``frame.synthesis``
(``frame-sample``), ``frame.scoring`` (``frame-score``), ``frame.recovery.inpaint``
(``frame-inpaint``), ``frame.eval`` (``frame-eval``) and ``frame-train``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from frame.choices import EMBEDDED_IMAGES
from frame.data.images import embedded_images, list_images, load_images, to_tensor
from frame.eval.report import Evaluator, Score, format_table
from frame.recovery.inpaint import inpaint_image, resize
from frame.run.checkpoints import load_model
from frame.scoring import score_images
from frame.synthesis import canvas_side, draw

if TYPE_CHECKING:
    from frame.models.base import FrameModel

#: objects need this many reference images (two halves of k + 1 = 6); fewer are texture exemplars
MIN_OBJECTS = 12
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def as_images(images: Tensor) -> Tensor:
    """``images`` as float ``N x 3 x H x W`` in [0, 1] (one ``C x H x W`` image, or grey ``N x 1 x H x W``)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor N x 3 x H x W in [0, 1], got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x 3 x H x W (or N x 1 x H x W) in [0, 1], got shape {tuple(images.shape)}")
    return images.float().expand(-1, 3, -1, -1)


class Model:
    """A trained FRAME model (``frame.load``); ``module`` is the LightningModule itself."""

    def __init__(self, module: FrameModel) -> None:
        self.module = module

    def __repr__(self) -> str:
        return f"frame.Model({type(self.module.energy).__name__}, {self.image_size} px, on {self.device})"

    @property
    def device(self) -> torch.device:
        return self.module.buffer.chains.device

    @property
    def image_size(self) -> int:
        """The side the model was trained on (its canvas for stationary models)."""
        return canvas_side(self.module)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def sample(self, n: int, steps: int | None = None, init: str = "buffer", size: int | None = None,
               batch_size: int | None = None, seed: int = 0) -> Tensor:
        """``n`` images after ``steps`` Langevin steps (eq. 16; default: the model's steps per
        learning iteration) from ``init`` (``frame.synthesis.INITS``: ``buffer`` continues the
        saved chains; ``flat``, ``zeros``, ``noise`` start afresh and need many more steps);
        ``size``: a larger canvas for a stationary model. ``N x 3 x size x size`` in [0, 1]."""
        with torch.no_grad():
            chains = draw(self.module, n, init, steps, size, batch_size, self._generator(seed), progress=True)
            return self.module.to_images(chains).cpu()

    def score(self, images: Tensor, kind: str = "f", batch_size: int = 64) -> Tensor:
        """f(I; w) per image (the paper's Table 1; ``kind="log_p"`` adds log q(I): the
        log-likelihood up to log Z), shape ``[N]``. Images of another size are centre-cropped
        to a square and resized to the model's side."""
        images = as_images(images)
        side = self.image_size
        if images.shape[-2:] != (side, side):
            h, w = images.shape[-2:]
            edge = min(h, w)
            top, left = (h - edge) // 2, (w - edge) // 2
            images = resize(images[..., top : top + edge, left : left + edge], (side, side)).clamp(0, 1)
        with torch.no_grad():
            return score_images(self.module, images, batch_size, kind)

    def inpaint(self, images: Tensor, masks: Tensor, steps: int | None = None, n_chains: int = 1,
                start: str | None = None, seed: int = 0) -> Tensor:
        """The images with their missing pixels sampled from p(I_M | I_notM; w) (Section 9).

        ``masks``: ``N x 1 x H x W`` (or ``N x H x W``) bool, True = missing. Each image is
        recovered on the model's canvas and only its missing pixels are pasted back, as
        ``frame-inpaint`` does; grey images stay grey. Returns ``N x 3 x H x W`` in [0, 1]."""
        images = as_images(images)
        masks = torch.as_tensor(masks)
        if masks.dim() == 3:
            masks = masks[:, None]
        if masks.shape[0] != images.shape[0] or masks.shape[1] != 1 or masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"masks must be N x 1 x H x W like the images {tuple(images.shape)}, got {tuple(masks.shape)}")
        generator = self._generator(seed)
        out = []
        for image, missing in zip(images.cpu(), masks.bool().cpu()):
            grey = bool((image[0] == image[1]).all() and (image[1] == image[2]).all())
            recovered, _ = inpaint_image(self.module, image, missing, grayscale=grey, n_steps=steps, n_chains=n_chains,
                                         start=start, generator=generator)
            out.append(recovered)
        return torch.stack(out)


def load(ckpt: str | Path, device: str | torch.device = "cpu") -> Model:
    """The model saved in a checkpoint of ``train.py`` (read safely: ``frame.run.checkpoints``)."""
    return Model(load_model(ckpt, device=device))


class Quality(dict):
    """``{metric: Score}`` (``frame.eval``); printed, the table with floors and ceilings."""

    def __init__(self, scores: dict[str, Score], setup: str) -> None:
        super().__init__(scores)
        self.setup = setup

    def __str__(self) -> str:
        return format_table(self, self.setup)


def reference_images(reference: Tensor | str | Path | Sequence[str | Path], size: tuple[int, int], grey: bool) -> Tensor:
    """A tensor as given, else an embedded name or image files/folders, read at ``size``."""
    if isinstance(reference, Tensor):
        return as_images(reference)
    if isinstance(reference, str) and reference in EMBEDDED_IMAGES:
        pictures = embedded_images(reference)
    else:
        paths = [reference] if isinstance(reference, (str, Path)) else list(reference)
        missing = [str(path) for path in paths if not Path(path).exists()]
        if missing:
            raise FileNotFoundError(2, f"no such file or folder (nor an embedded name: {', '.join(EMBEDDED_IMAGES)})",
                                    missing[0])
        pictures = load_images(list_images(paths))
    return to_tensor(pictures, size, grayscale=grey)


def evaluate(samples: Tensor, reference: Tensor | str | Path | Sequence[str | Path], kind: str = "auto",
             vgg_source: str = "caffe", seed: int = 0, **options) -> Quality:
    """How good ``samples`` are against ``reference`` (``frame.eval``): every metric with its
    floor (real images against real images) and ceiling (white noise).

    ``reference``: images (a tensor), an embedded name (``lfw_faces``, ``brick``, ...), or image
    files and folders, read at the samples' size (grey samples get a grey reference). ``kind``:
    ``objects``, ``texture``, or ``auto`` (objects when the reference holds at least 12 images).
    ``options`` go to ``frame.eval.Evaluator`` (``n_crops``, ``k``, ...). VGG-16 feature
    distances (``vgg_source``: the Caffe weights by default), not Inception FID."""
    samples = as_images(samples).cpu()
    grey = bool((samples.amax(1) - samples.amin(1)).max() <= 1 / 255)
    real = reference_images(reference, tuple(samples.shape[-2:]), grey).cpu()
    if kind == "auto":
        kind = "objects" if len(real) >= MIN_OBJECTS else "texture"
    if kind == "objects":
        options.setdefault("n", min(len(samples), len(real) // 2))
    evaluator = Evaluator(real, kind, seed=seed, source=vgg_source, **options)
    return Quality(evaluator(samples), evaluator.setup())


def run_folder(overrides: Sequence[str]) -> Path:
    """Where ``frame-train`` with ``overrides`` writes its run: the config's ``hydra.run.dir``,
    resolved here (its time stamp and process id taken now), absolute."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return Path(OmegaConf.select(cfg, "hydra.run.dir"))


def train(overrides: Sequence[str] = ()) -> Path:
    """Trains a model as ``frame-train <overrides>`` does (Hydra overrides of ``conf/``, e.g.
    ``["model=stationary", "data=texture"]``) and returns its run folder; the checkpoint is
    ``<run>/checkpoints/last.ckpt``. The run is a child process (its own Hydra state, logging and
    signal handling); a failure raises ``RuntimeError`` with the command's one-line error."""
    overrides = [str(item) for item in overrides]
    if any(item.startswith("-") for item in overrides):
        raise ValueError(f"frame.train takes key=value overrides only, got {[i for i in overrides if i.startswith('-')]}")
    given = [item for item in overrides if item.startswith(("hydra.run.dir=", "+hydra.run.dir="))]
    folder = (Path(given[-1].split("=", 1)[1]) if given else run_folder(overrides)).absolute()
    elsewhere = [item.split("=", 1)[1] for item in overrides if item.startswith("paths.output_dir=")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CONF_DIR.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    command = [sys.executable, "-m", "frame.cli.train", *overrides, f"hydra.run.dir={folder}"]
    last = ""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        for line in child.stdout:  # echoed here: a notebook shows what the run prints
            sys.stdout.write(line)
            error = re.search(r"\S+: error: .*", line)  # frame-train's one line, maybe after a progress bar's
            last = error.group(0).strip() if error else last
        status = child.wait()
    if status != 0:
        raise RuntimeError(last or f"frame-train exited with status {status}")
    return Path(elsewhere[-1]).absolute() if elsewhere else folder  # paths.output_dir: where the run wrote
