"""FRAME energies f(I; w): one module per variant of the paper."""

from frame.energies.base import Energy
from frame.energies.deep_frame import DeepFrameEnergy, NonStationaryEnergy, StationaryEnergy

__all__ = ["Energy", "DeepFrameEnergy", "NonStationaryEnergy", "StationaryEnergy"]
