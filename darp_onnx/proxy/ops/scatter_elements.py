"""ScatterElements (and Scatter, its name before opset 11): a copy of data with the elements that indices
address along one axis replaced, or reduced (add, mul, max, min), with updates. Graph networks aggregate
messages this way (PyG's scatter), and detectors' decoders write boxes into place with it.
Negative indices count from the end of the axis, as in ONNX."""

from __future__ import annotations

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for
from darp_onnx.proxy.registry import add_converter

__all__ = ["ScatterElements"]

_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


class ScatterElements(nn.Module):
    def __init__(self, axis: int, reduction: str) -> None:
        super().__init__()
        self.axis = axis
        self.reduction = reduction

    def forward(self, data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        axis = self.axis % data.dim()
        index = indices.long()
        index = torch.where(index < 0, index + data.shape[axis], index)
        updates = updates.to(data.dtype)
        if self.reduction == "none":
            return data.scatter(axis, index, updates)
        return data.scatter_reduce(axis, index, updates, _REDUCE[self.reduction], include_self=True)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, reduction={self.reduction}"


def _convert(node, ctx):
    attrs = node_attributes(node)
    reduction = attrs.get("reduction", "none")
    if reduction != "none" and reduction not in _REDUCE:
        raise NotImplementedError(f"{node.op_type} reduction '{reduction}' is not supported")
    return result_for(node, ScatterElements(int(attrs.get("axis", 0)), reduction))


add_converter("ScatterElements")(_convert)
add_converter("Scatter", versions=[9])(_convert)  # Scatter-11, deprecated: no test covers it, not claimed
