"""Image recovery (paper, Section 9 and Table 2).

- ``masks``: square masks, the conditional start of a chain, and ``RecoveryMasks``, the holes
  of recovery training;
- ``chains``: ``RecoveryChains``, the chain source (``model.buffer``) that trains a model for recovery;
- ``inpaint``: the model's recovery by conditional Langevin sampling of p(I_M | I_notM; w);
- ``baselines``: classical fills (harmonic, TV, biharmonic, OpenCV, mean) and the error measure.
"""

from frame.recovery.baselines import (
    BASELINES,
    LABELS,
    available_baselines,
    biharmonic,
    exemplar_fill,
    harmonic,
    masked_mae,
    mean_fill,
    navier_stokes,
    opencv_available,
    telea,
    total_variation,
)
from frame.recovery.chains import RecoveryChains, recovery_of
from frame.recovery.inpaint import inpaint, inpaint_image
from frame.recovery.masks import RecoveryMasks, square_masks, start_chains

__all__ = [
    "BASELINES",
    "LABELS",
    "RecoveryChains",
    "RecoveryMasks",
    "available_baselines",
    "biharmonic",
    "exemplar_fill",
    "harmonic",
    "inpaint",
    "inpaint_image",
    "masked_mae",
    "mean_fill",
    "navier_stokes",
    "opencv_available",
    "recovery_of",
    "square_masks",
    "start_chains",
    "telea",
    "total_variation",
]
