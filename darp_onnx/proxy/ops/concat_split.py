"""Concat, Split and Slice.

Split sizes and Slice starts/ends/axes/steps may be run-time tensors (opset 13 / opset 10 onwards); they
are read in `forward`. Slice follows the ONNX clamping rules, so INT64_MAX ends and negative steps work.
"""

from __future__ import annotations

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["Concat", "Slice", "Split", "slice_axis"]


class Concat(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat([x for x in xs if x is not None], dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Split(nn.Module):
    """Sizes come from `split` (attribute or input), else `num_outputs` chunks of ceil(dim / n) with a
    smaller last one (opset 18), else equal parts, one per output."""

    def __init__(self, axis: int, n_outputs: int, split: list[int] | None = None,
                 num_outputs: int | None = None) -> None:
        super().__init__()
        self.axis = axis
        self.n_outputs = n_outputs
        self.split = split
        self.num_outputs = num_outputs

    def _sizes(self, dim: int, split: torch.Tensor | None) -> list[int]:
        sizes = to_int_list(split) if split is not None else self.split
        if sizes:
            return sizes
        if self.num_outputs is not None:
            n = self.num_outputs
            chunk = -(-dim // n)
            last = dim - chunk * (n - 1)
            if last <= 0:  # onnxruntime rejects these as well
                raise ValueError(f"Split: cannot split a dim of {dim} into {n} outputs of {chunk}")
            return [chunk] * (n - 1) + [last]
        n = self.n_outputs
        if dim % n:
            raise ValueError(f"Split: dim {dim} does not divide into {n} equal outputs")
        return [dim // n] * n

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None):
        sizes = self._sizes(x.shape[self.axis], split)
        parts = torch.split(x, sizes, dim=self.axis)
        return parts[0] if self.n_outputs == 1 else tuple(parts)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, split={self.split}, num_outputs={self.num_outputs}"


def slice_axis(x: torch.Tensor, axis: int, start: int, end: int, step: int) -> torch.Tensor:
    """x[start:end:step] along one axis with ONNX clamping (negative steps included)."""
    dim = x.shape[axis]
    if step == 0:
        raise ValueError("Slice: step must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        if step == 1:
            return x.narrow(axis, start, max(end - start, 0))
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    index = torch.arange(start, end, step, device=x.device, dtype=torch.int64)
    return x.index_select(axis, index)


class Slice(nn.Module):
    """Opset 10+: starts/ends/axes/steps inputs; opset 1: the same values as attributes."""

    def __init__(self, starts=None, ends=None, axes=None) -> None:
        super().__init__()
        self.starts, self.ends, self.axes = starts, ends, axes

    def forward(self, x, starts=None, ends=None, axes=None, steps=None) -> torch.Tensor:
        starts_l = to_int_list(starts) if starts is not None else self.starts
        ends_l = to_int_list(ends) if ends is not None else self.ends
        axes_l = to_int_list(axes) if axes is not None else self.axes
        if axes_l is None:
            axes_l = list(range(len(starts_l)))
        steps_l = to_int_list(steps) if steps is not None else [1] * len(starts_l)
        for axis, s, e, st in zip(axes_l, starts_l, ends_l, steps_l, strict=True):
            x = slice_axis(x, axis + x.dim() if axis < 0 else axis, s, e, st)
        return x

    def extra_repr(self) -> str:
        return f"starts={self.starts}, ends={self.ends}, axes={self.axes}" if self.starts is not None else ""


@add_converter("Concat")
def convert_concat(node, ctx):
    attrs = node_attributes(node)
    if "axis" not in attrs:
        raise NotImplementedError("Concat without an axis attribute (opset 1 default) is not supported")
    return result_for(node, Concat(int(attrs["axis"])))


def _split_module(node, num_outputs_allowed: bool) -> Split:
    attrs = node_attributes(node)
    split = attrs.get("split")
    num = attrs.get("num_outputs") if num_outputs_allowed else None
    if num is not None and int(num) != len(node.output):
        raise NotImplementedError(
            f"Split num_outputs={num} differs from the node's {len(node.output)} outputs"
        )
    return Split(int(attrs.get("axis", 0)), len(node.output), list(split) if split else None,
                 int(num) if num is not None else None)


@add_converter("Split", versions=[1, 2, 11])
def convert_split_attr(node, ctx):
    """Opset < 13: sizes in the `split` attribute (opset 1 also allows a second input)."""
    return result_for(node, _split_module(node, False))


@add_converter("Split", versions=[13])
def convert_split_input(node, ctx):
    return result_for(node, _split_module(node, False))


@add_converter("Split", versions=[v for v in schema_versions("Split") if v >= 18])
def convert_split_num_outputs(node, ctx):
    return result_for(node, _split_module(node, True))


@add_converter("Slice", versions=[1])
def convert_slice_attr(node, ctx):
    attrs = node_attributes(node)
    axes = attrs.get("axes")
    return result_for(node, Slice(list(attrs["starts"]), list(attrs["ends"]), list(axes) if axes else None))


@add_converter("Slice", versions=[v for v in schema_versions("Slice") if v >= 10])
def convert_slice_input(node, ctx):
    return result_for(node, Slice())
