"""Channel dependency analysis: channel groups, axis maps and residual branches."""

from darp_onnx.groups.analysis import analyse
from darp_onnx.groups.model import AxisMap, ChannelAnalysis, ChannelGroup, ResidualBranch, Segment, ShapeEdit
from darp_onnx.load.naming import name_nodes

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
