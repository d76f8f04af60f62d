"""The face judge: does a face detector trained on other faces find the samples as face-like as real faces?

Every judge trained from scratch on a hundred faces (the two-sample classifier of ``frame.eval.c2st``, and
any other net, kernel or statistic fit to them) reads chains that match the faces' local statistics as
real, while a person tells them apart at a glance: the eyes do not agree, a feature is smeared or doubled.
What a person uses is knowledge of faces, gathered elsewhere. This judge borrows it from a face detector
(MTCNN's ONet, ``frame.nets.face_net``), trained on tens of thousands of photographs and on no image of
ours, and never seen by a FRAME model (whose energy is built on VGG-16). Nothing is trained here: each
image gets one number, the detector's face logit, and the judge reads how the two sets' numbers differ.

``face_auc``: the probability that a real image scores as more face-like than a sample (ties count half),
the area under the ROC curve of the logit as a test of "real" against "sample", with Hanley and McNeil's
95% interval; ``face_p``: the one-sided Mann-Whitney p-value of "real images score higher". 1/2: the
detector finds the samples as face-like as real faces; 1: every real face scores above every sample.
Being one fixed number per image, it needs no folds and no held-out split; being fixed, it sees only
what the detector was trained to see (a grid of the chains' amplitude it does not see: that is the
spectrum's and the classifier's job).

Each image is resized (bilinear, antialiased when shrunk) to the detector's 48 x 48 crop, grey
images are read as RGB, and the logit is the mean of the image's and its mirror image's (faces are
mirrored in training, so a face and its mirror image are equally faces).

``looks_like_faces``: whether a reference set is one of cropped faces (the judge's premise): at least
``FACE_SHARE`` of its images have a face probability above 1/2.
"""

from __future__ import annotations

import torch
from scipy import stats
from torch import Tensor, nn

from frame.eval.c2st import auc_interval
from frame.eval.features import as_rgb01
from frame.nets.face_net import SIDE, ONet

#: the share of reference images the detector must call faces for ``looks_like_faces``
FACE_SHARE = 0.9


@torch.no_grad()
def face_logits(net: ONet, images: Tensor, batch_size: int = 256) -> Tensor:
    """The detector's face logit of each image ``[N, 1 or 3, H, W]`` in [0, 1], mean of the image and its mirror."""
    out = []
    for chunk in as_rgb01(images).cpu().split(batch_size):
        chunk = nn.functional.interpolate(chunk, size=(SIDE, SIDE), mode="bilinear", align_corners=False,
                                          antialias=min(chunk.shape[-2:]) > SIDE)
        chunk = (chunk * 255 - 127.5) / 128
        out.append((net(chunk) + net(chunk.flip(-1))) / 2)
    return torch.cat(out)


def face_auc(sample_logits: Tensor, real_logits: Tensor) -> dict[str, float]:
    """``face_auc`` (with ``face_auc_low``/``_high``, 95%) and ``face_p`` of samples against real images, from their logits."""
    real, fake = real_logits.double().numpy(), sample_logits.double().numpy()
    test = stats.mannwhitneyu(real, fake, alternative="greater")
    auc = float(test.statistic) / (len(real) * len(fake))
    low, high = auc_interval(auc, len(real), len(fake))
    return {"face_auc": auc, "face_auc_low": float(low), "face_auc_high": float(high), "face_p": float(test.pvalue)}


def looks_like_faces(reference_logits: Tensor) -> bool:
    """Whether at least ``FACE_SHARE`` of the reference images are faces to the detector (their logits: probability above 1/2)."""
    return bool((reference_logits > 0).float().mean() >= FACE_SHARE)
