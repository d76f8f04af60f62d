"""Image recovery (paper, Section 9 and Table 2): classical baselines and the error measure.

The model's own recovery is ``frame.inpaint.inpaint`` (conditional Langevin sampling); the
training option is ``model.recovery`` (``frame.masks.RecoveryMasks``).
"""

from frame.recovery.baselines import (
    BASELINES,
    LABELS,
    available_baselines,
    biharmonic,
    harmonic,
    masked_mae,
    mean_fill,
    navier_stokes,
    opencv_available,
    telea,
    total_variation,
)

__all__ = [
    "BASELINES",
    "LABELS",
    "available_baselines",
    "biharmonic",
    "harmonic",
    "masked_mae",
    "mean_fill",
    "navier_stokes",
    "opencv_available",
    "telea",
    "total_variation",
]
