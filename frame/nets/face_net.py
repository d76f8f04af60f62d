"""A face detector trained on faces outside any data set of ours: the eyes of the face judge (``frame.eval.faces``).

The network is ONet, the last stage of MTCNN (Zhang, Zhang, Li and Qiao 2016, "Joint face detection and
alignment using multi-task cascaded convolutional networks"): it takes a 48 x 48 RGB crop and says whether it
holds a face (and where the face's box and five landmarks lie). Trained to tell faces from everything else on
tens of thousands of photographs, it knows what a face is made of (two eyes that agree, one nose, one mouth,
in their places), which no judge trained from scratch on a hundred faces can learn, and which the FRAME
models never see: their energy is built on ImageNet VGG-16 filters.

Weights: ``facenet_pytorch/data/onet.pt`` from the PyPI wheel ``facenet-pytorch==2.6.0`` (MIT licence; the
weights are the authors' Caffe ones, converted), fetched once with pip without dependencies into
``<cache>/wheels`` (``frame.nets.weights.fetch_wheel``). The wheel and the member are pinned by sha256, the
member is read with ``torch.load(weights_only=True)`` (tensors only, no code) and loaded strictly, key by key
and shape by shape, into the module below. Input: RGB in 0-255 minus 127.5, over 128 (the cascade's own).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
import zipfile

import torch
from torch import Tensor, nn

from frame.cache import cache_root
from frame.nets.weights import PinnedWheel, WeightsUnavailableError, fetch_wheel
from frame.outputs import write_text

WHEEL = PinnedWheel(
    "facenet-pytorch==2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
    "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", "the face detector's weights (MTCNN ONet)",
    "or leave the face judge out: frame-eval --faces off, callbacks.eval_metrics.faces=false",
)
MEMBER = "facenet_pytorch/data/onet.pt"
MEMBER_SHA256 = "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"
#: the side of the square crop ONet reads
SIDE = 48


class ONet(nn.Module):
    """MTCNN's output network; ``forward`` returns the face logit, log p(face) - log p(not a face), one per image.

    The layer names are the converted weights' own, so that they load strictly. The box and landmark heads
    are kept for that reason only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)  # not a face, a face
        self.dense6_2 = nn.Linear(256, 4)  # the box
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, 3, 48, 48]``, normalised as the module docstring says."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))  # Caffe's (W, H, C) order of the dense layer
        logits = self.dense6_1(x)
        return logits[:, 1] - logits[:, 0]


def read_member(wheel: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict in the wheel, after checking the member's sha256; tensors only."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
    if (digest := hashlib.sha256(data).hexdigest()) != MEMBER_SHA256:
        raise WeightsUnavailableError(f"{wheel}: {MEMBER} has sha256 {digest}, not the pinned {MEMBER_SHA256}")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_face_net(cache_dir: str | os.PathLike | None = None, quiet_after_failure: float | None = None) -> ONet:
    """ONet with the pinned weights (fetched once into the cache), frozen, in eval mode.

    ``quiet_after_failure`` (seconds): a fetch that fails leaves a mark in the cache, and for this long after it no
    other fetch is tried (an offline machine would otherwise wait on pip at every run); None: always try.
    """
    root = cache_root(cache_dir)
    wheel, mark = root / "wheels" / WHEEL.filename, root / "wheels" / (WHEEL.filename + ".failed")
    if quiet_after_failure is not None and not wheel.is_file() and mark.is_file():
        if (age := time.time() - mark.stat().st_mtime) < quiet_after_failure:
            raise WeightsUnavailableError(f"{WHEEL.what} could not be fetched {age / 3600:.1f} h ago ({mark}); "
                                          "frame-fetch-weights fetches them")
    try:
        path = fetch_wheel(root, WHEEL)
    except WeightsUnavailableError as e:
        if quiet_after_failure is not None:
            with contextlib.suppress(OSError):  # a cache it cannot write in: it tries again next time
                write_text(mark, f"{str(e).splitlines()[0]}\n")
        raise
    with contextlib.suppress(OSError):
        mark.unlink(missing_ok=True)
    net = ONet()
    net.load_state_dict(read_member(path))  # strict: every key, every shape
    return net.eval().requires_grad_(False)


def fetch_face_net(cache_dir: str | os.PathLike | None = None) -> str:
    """Fetches and checks the face detector's wheel; what was cached, in one line (``frame-fetch-weights`` prints it)."""
    load_face_net(cache_dir)
    path = cache_root(cache_dir) / "wheels" / WHEEL.filename
    return f"face detector:    {path} ({path.stat().st_size / 2**20:.1f} MiB, {MEMBER} sha256 {MEMBER_SHA256[:12]}...)"
