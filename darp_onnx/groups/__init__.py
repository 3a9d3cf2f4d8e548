"""Channel dependency analysis: channel groups, axis maps and residual branches."""

from darp_onnx.groups.analysis import analyse, name_nodes
from darp_onnx.groups.model import AxisMap, ChannelAnalysis, ChannelGroup, ResidualBranch, Segment, ShapeEdit

__all__ = [
    "AxisMap",
    "ChannelAnalysis",
    "ChannelGroup",
    "ResidualBranch",
    "Segment",
    "ShapeEdit",
    "analyse",
    "name_nodes",
]
