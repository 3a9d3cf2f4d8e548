"""MACs and parameter counts: an independent graph count and the mask-dependent cost model."""

from darp_onnx.cost.count import GraphCount, count_graph, count_graph_params
from darp_onnx.cost.model import CostModel

__all__ = ["CostModel", "GraphCount", "count_graph", "count_graph_params"]
