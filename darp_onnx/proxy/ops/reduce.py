"""Reductions: ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp, ArgMax, ArgMin.

`axes` is an attribute in older opsets and an optional input later (ReduceSum from opset 13, the others
from opset 18). No axes (or an empty axes tensor) reduces every axis, unless noop_with_empty_axes=1, in
which case only the elementwise part applies (abs for L1, square for SumSquare, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["ArgExtreme", "Reduce"]

Reducer = Callable[[torch.Tensor, list[int], bool], torch.Tensor]


def _sum(x, dims, keep):
    return torch.sum(x, dims, keepdim=keep, dtype=x.dtype)


def _mean(x, dims, keep):
    if x.dtype.is_floating_point:
        return torch.mean(x, dims, keepdim=keep)
    count = 1
    for d in dims:
        count *= x.shape[d]
    return torch.div(_sum(x, dims, keep), count, rounding_mode="trunc")


def _prod(x, dims, keep):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=keep, dtype=x.dtype)
    return x


def _extreme_identity(dtype: torch.dtype, largest: bool):
    """The identity of max (largest) or min in a dtype: -inf/+inf, the integer bounds, False/True."""
    if dtype == torch.bool:
        return not largest
    if dtype.is_floating_point:
        return -math.inf if largest else math.inf
    info = torch.iinfo(dtype)
    return info.min if largest else info.max


def _extreme(largest: bool) -> Reducer:
    """ReduceMax/ReduceMin; over an empty axis the result is the operation's identity, as in onnxruntime
    (-inf for max, +inf for min: empty detection sets reach this)."""
    def reduce(x, dims, keep):
        if any(x.shape[d] == 0 for d in dims):
            shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keep or i not in dims]
            return torch.full(shape, _extreme_identity(x.dtype, largest), dtype=x.dtype, device=x.device)
        return (torch.amax if largest else torch.amin)(x, dims, keepdim=keep)

    return reduce


_REDUCERS: dict[str, Reducer] = {
    "ReduceSum": _sum,
    "ReduceMean": _mean,
    "ReduceMax": _extreme(largest=True),
    "ReduceMin": _extreme(largest=False),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: _sum(x.abs(), d, k),
    "ReduceL2": lambda x, d, k: torch.sqrt(_sum(x * x, d, k)),
    "ReduceSumSquare": lambda x, d, k: _sum(x * x, d, k),
    "ReduceLogSum": lambda x, d, k: torch.log(_sum(x, d, k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k),
}

# Reducing over no axes (noop_with_empty_axes=1) still applies the elementwise part, as onnxruntime does.
_NO_AXES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ReduceL1": torch.abs,
    "ReduceL2": lambda x: torch.sqrt(x * x),
    "ReduceSumSquare": lambda x: x * x,
    "ReduceLogSum": torch.log,
}

# The first schema version that takes `axes` as an input instead of an attribute.
_AXES_INPUT_SINCE = {op: 18 for op in _REDUCERS} | {"ReduceSum": 13}


class Reduce(nn.Module):
    def __init__(self, op_type: str, keepdims: bool, noop_with_empty_axes: bool,
                 axes: list[int] | None = None) -> None:
        super().__init__()
        self.op_type = op_type
        self.fn = _REDUCERS[op_type]
        self.keepdims = keepdims
        self.noop = noop_with_empty_axes
        self.axes = axes

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = to_int_list(axes) if axes is not None else self.axes
        if not dims and not self.noop:
            dims = list(range(x.dim()))
        dims = sorted({d + x.dim() if d < 0 else d for d in dims or []})
        if not dims:  # noop_with_empty_axes, or a scalar input
            return _NO_AXES.get(self.op_type, lambda t: t)(x)
        return self.fn(x, dims, self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.op_type}, axes={self.axes}, keepdims={self.keepdims}, noop_with_empty_axes={self.noop}"


class ArgExtreme(nn.Module):
    """ArgMax/ArgMin as int64; select_last_index picks the last of equal extremes (default: first)."""

    def __init__(self, largest: bool, axis: int, keepdims: bool, select_last: bool) -> None:
        super().__init__()
        self.largest = largest
        self.axis = axis
        self.keepdims = keepdims
        self.select_last = select_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        fn = torch.argmax if self.largest else torch.argmin
        if not self.select_last:
            return fn(x, axis, keepdim=self.keepdims)
        return x.shape[axis] - 1 - fn(x.flip(axis), axis, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return (f"{'max' if self.largest else 'min'}, axis={self.axis}, keepdims={self.keepdims}, "
                f"select_last_index={self.select_last}")


def _register(op_type: str) -> None:
    since = _AXES_INPUT_SINCE[op_type]
    versions = schema_versions(op_type)

    @add_converter(op_type, versions=[v for v in versions if v < since])
    def convert_axes_attribute(node, ctx):
        attrs = node_attributes(node)
        axes = attrs.get("axes")
        return result_for(node, Reduce(op_type, bool(attrs.get("keepdims", 1)), False,
                                       list(axes) if axes is not None else None))

    @add_converter(op_type, versions=[v for v in versions if v >= since])
    def convert_axes_input(node, ctx):
        attrs = node_attributes(node)
        return result_for(node, Reduce(op_type, bool(attrs.get("keepdims", 1)),
                                       bool(attrs.get("noop_with_empty_axes", 0))))


for _op in _REDUCERS:
    _register(_op)


def _register_arg(op_type: str, largest: bool) -> None:
    @add_converter(op_type)
    def convert_arg(node, ctx):
        attrs = node_attributes(node)
        module = ArgExtreme(largest, int(attrs.get("axis", 0)), bool(attrs.get("keepdims", 1)),
                            bool(attrs.get("select_last_index", 0)))
        return result_for(node, module, static_inputs=[0])


_register_arg("ArgMax", True)
_register_arg("ArgMin", False)
