"""Pad: attribute form (opset 1 `paddings`, opset 2 `pads`/`value`) and input form (opset 11+ pads and
constant_value inputs, opset 18+ axes input); modes constant, reflect, edge and wrap; negative pads crop.

Non-constant modes gather along each padded axis with a computed index, so they work for any rank and
any set of axes (torch's F.pad limits reflect/replicate/circular to the trailing 1-3 axes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.ops.conv import torch_pad_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["PadModule"]

_MODES = ("constant", "reflect", "edge", "wrap")


def _source_index(length: int, begin: int, end: int, mode: str, device) -> torch.Tensor:
    """For each output position along one axis, the input position it copies."""
    j = torch.arange(-begin, length + end, device=device)
    if mode == "edge":
        return j.clamp(0, length - 1)
    if mode == "wrap":
        return j.remainder(length)
    period = 2 * (length - 1)
    if period == 0:
        return torch.zeros_like(j)
    m = j.remainder(period)
    return torch.where(m < length, m, period - m)


class PadModule(nn.Module):
    """`pads` and `value` are set for the attribute forms; the input forms read them in forward."""

    def __init__(self, mode: str, pads: list[int] | None = None, value: float = 0.0) -> None:
        super().__init__()
        self.mode = mode
        self.pads = pads
        self.value = value

    def forward(self, x, pads=None, constant_value=None, axes=None):
        rank = x.dim()
        pad_list = self.pads if self.pads is not None else to_int_list(pads)
        value = self.value
        if self.pads is None and constant_value is not None and constant_value.numel() > 0:
            value = constant_value.reshape(-1)[0].item()
        axis_list = [a % rank for a in to_int_list(axes)] if axes is not None else list(range(rank))
        n = len(axis_list)
        if len(pad_list) != 2 * n:
            raise ValueError(f"Pad got {len(pad_list)} pads for {n} axes")
        begin, end = [0] * rank, [0] * rank
        for i, axis in enumerate(axis_list):
            begin[axis], end[axis] = pad_list[i], pad_list[i + n]
        if self.mode == "constant":
            if not x.dtype.is_floating_point:
                value = int(value)
            return F.pad(x, torch_pad_list(begin, end), value=value)
        # Negative pads crop first (onnxruntime wraps around the cropped extent), then the rest pads.
        x = x[tuple(slice(max(0, -begin[a]), x.shape[a] - max(0, -end[a])) for a in range(rank))]
        for axis in range(rank):
            b, e = max(0, begin[axis]), max(0, end[axis])
            if b or e:
                x = x.index_select(axis, _source_index(x.shape[axis], b, e, self.mode, x.device))
        return x

    def extra_repr(self) -> str:
        extra = f", pads={self.pads}, value={self.value}" if self.pads is not None else ""
        return f"mode={self.mode}{extra}"


def _mode(attrs) -> str:
    mode = attrs.get("mode", "constant")
    if mode not in _MODES:
        raise NotImplementedError(f"Pad mode={mode!r}")
    return mode


@add_converter("Pad", versions=[2])  # Pad-1 (opset 1, `paddings`): no test covers it, not claimed
def convert_pad_attribute(node, ctx):
    attrs = node_attributes(node)
    pads = attrs["pads"]
    module = PadModule(_mode(attrs), pads=[int(p) for p in pads], value=float(attrs.get("value", 0.0)))
    return result_for(node, module)


@add_converter("Pad", versions=[v for v in schema_versions("Pad") if v >= 11])
def convert_pad(node, ctx):
    return result_for(node, PadModule(_mode(node_attributes(node))), static_inputs=(1, 2, 3))
