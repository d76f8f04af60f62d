"""FRAME energies f(I; w): one module per variant of the paper."""

from frame.energies.base import Energy
from frame.energies.deep_frame import DeepFrameEnergy, NonStationaryEnergy, StationaryEnergy
from frame.energies.gconvnet import GConvNetEnergy
from frame.energies.linear_frame import LinearNonStationaryEnergy, LinearStationaryEnergy
from frame.energies.multigrid import MultigridEnergy
from frame.energies.scratch import ScratchEnergy
from frame.energies.top_layer import TopLayerEnergy

__all__ = [
    "Energy", "DeepFrameEnergy", "NonStationaryEnergy", "StationaryEnergy", "GConvNetEnergy", "ScratchEnergy", "MultigridEnergy",
    "LinearStationaryEnergy", "LinearNonStationaryEnergy", "TopLayerEnergy",
]
