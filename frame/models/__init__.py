"""LightningModules: one base running Algorithm 1, one class per FRAME variant."""

from frame.models.base import DivergenceError, FrameModel
from frame.models.gconvnet import GConvNetFrame
from frame.models.nonstationary import NonStationaryFrame
from frame.models.scratch import ScratchFrame
from frame.models.stationary import StationaryFrame

__all__ = ["DivergenceError", "FrameModel", "GConvNetFrame", "NonStationaryFrame", "ScratchFrame", "StationaryFrame"]
