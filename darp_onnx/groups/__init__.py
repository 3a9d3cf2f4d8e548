"""Channel dependency analysis: channel groups, axis maps, residual branches and proxy gates."""

from darp_onnx.groups.analysis import analyse, name_nodes
from darp_onnx.groups.gates import GateHandle, attach_gates
from darp_onnx.groups.model import AxisMap, ChannelAnalysis, ChannelGroup, ResidualBranch, Segment, ShapeEdit

__all__ = [
    "AxisMap",
    "ChannelAnalysis",
    "ChannelGroup",
    "GateHandle",
    "ResidualBranch",
    "Segment",
    "ShapeEdit",
    "analyse",
    "attach_gates",
    "name_nodes",
]
