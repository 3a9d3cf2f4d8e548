"""Rules for ops that act along one named axis (freeze when it is the channel axis) and for ops whose
shape constants index the channel axis: Softmax, LayerNorm, Reduce*, ArgMax, Shape, Resize, Pad,
Expand, Tile."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.groups.model import ShapeEdit
from darp_onnx.groups.rules_basic import attr
from darp_onnx.groups.tracer import Layout, Tracer


def softmax(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    if lay is None:
        return
    legacy = t.opset < 13
    axis = int(attr(node, "axis", 1 if legacy else -1))
    axis = axis + rank if axis < 0 and rank is not None else axis
    if axis < 0 or (lay.axis >= axis if legacy else lay.axis == axis):
        t.freeze(lay.units, f"{node.op_type} '{node.name}' normalises over the channel axis")
        return
    t.set(node.output[0], lay)


def layer_norm(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    if lay is None:
        return
    axis = int(attr(node, "axis", -1))
    axis = axis + rank if axis < 0 and rank is not None else axis
    if axis < 0 or lay.axis >= axis:
        t.freeze(lay.units, f"LayerNormalization '{node.name}' normalises over the channel axis")
        return
    t.set(node.output[0], lay)


def _reduce_axes(t: Tracer, node: onnx.NodeProto, rank: int) -> list[int] | None:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = t.const(node.input[1])
        if axes is None:
            return None
    if axes is None or len(np.ravel(axes)) == 0:
        return None if int(attr(node, "noop_with_empty_axes", 0)) else list(range(rank))
    return sorted(int(a) % rank for a in np.ravel(axes))


def reduce(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    if lay is None:
        return
    axes = None if rank is None else _reduce_axes(t, node, rank)
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = None if rank is None else [int(attr(node, "axis", 0)) % rank]
    if axes is None or lay.axis in axes:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' reduces over the channel axis")
        return
    keep = int(attr(node, "keepdims", 1))
    t.set(node.output[0], lay if keep else lay.moved(lay.axis - sum(a < lay.axis for a in axes)))


def shape_of(t: Tracer, node: onnx.NodeProto) -> None:
    """Shape/Size of a tracked tensor: the run-time channel count is not followed, so freeze."""
    lay = t.layout(node.input[0])
    if lay is None:
        return
    start, end = int(attr(node, "start", 0)), attr(node, "end")
    rank = t.rank(node.input[0]) or 0
    start = start + rank if start < 0 else start
    end = rank if end is None else (int(end) + rank if int(end) < 0 else int(end))
    if node.op_type == "Shape" and not start <= lay.axis < end:
        return
    t.freeze(lay.units, f"{node.op_type} '{node.name}' reads the channel count at run time")


def _shape_arg(t: Tracer, node: onnx.NodeProto, lay: Layout, pos: int, what: str):
    value = t.const(node.input[pos]) if len(node.input) > pos and node.input[pos] else None
    if value is None:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' {what} computed at run time")
    return None if value is None else np.ravel(value)


def resize(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    if lay.axis >= 2:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' resizes the channel axis")
        return
    scales_pos = 1 if (node.op_type == "Upsample" or t.opset < 11) else 2
    has_scales = len(node.input) > scales_pos and node.input[scales_pos]
    scales = t.const(node.input[scales_pos]) if has_scales else None
    if scales is not None and np.ravel(scales).size:
        if float(np.ravel(scales)[lay.axis]) != 1.0:
            t.freeze(lay.units, f"{node.op_type} '{node.name}' scales the channel axis")
            return
    elif node.op_type == "Upsample" and attr(node, "scales") is not None:
        if float(attr(node, "scales")[lay.axis]) != 1.0:
            t.freeze(lay.units, f"Upsample '{node.name}' scales the channel axis")
            return
    else:
        sizes = _shape_arg(t, node, lay, 3, "sizes")
        if sizes is None:
            return
        if node.input[3] and attr(node, "axes") is not None:
            t.freeze(lay.units, f"Resize '{node.name}' with axes is not followed")
            return
        t.edit(ShapeEdit(node.name, 3, lay.axis, (node.output[0], lay.axis), 0, lay.size))
    t.set(node.output[0], lay)


def pad(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    if lay is None:
        return
    pads = attr(node, "pads") if t.opset < 11 else _shape_arg(t, node, lay, 1, "pads")
    axes = None if t.opset < 18 or len(node.input) < 4 or not node.input[3] else t.const(node.input[3])
    axes_unknown = t.opset >= 18 and len(node.input) > 3 and node.input[3] and axes is None
    if pads is None or rank is None or axes_unknown:
        t.freeze(lay.units, f"Pad '{node.name}' pads unknown")
        return
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in np.ravel(axes)]
    n = len(axes)
    if lay.axis in axes:
        j = axes.index(lay.axis)
        if int(pads[j]) != 0 or int(pads[j + n]) != 0:
            t.freeze(lay.units, f"Pad '{node.name}' pads the channel axis")
            return
    t.set(node.output[0], lay)


def expand(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    shape = _shape_arg(t, node, lay, 1, "shape")
    rank, out_rank = t.rank(node.input[0]), t.rank(node.output[0])
    if shape is None or rank is None or out_rank is None:
        return
    pos = lay.axis + out_rank - rank
    j = pos - (out_rank - len(shape))
    if j >= 0 and int(shape[j]) not in (1, lay.size):
        t.freeze(lay.units, f"Expand '{node.name}' broadcasts the channel axis")
        return
    if j >= 0 and int(shape[j]) == lay.size and lay.size != 1:
        t.edit(ShapeEdit(node.name, 1, j, (node.output[0], pos), 0, lay.size))
    t.set(node.output[0], lay.moved(pos))


def tile(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    repeats = _shape_arg(t, node, lay, 1, "repeats")
    if repeats is None:
        return
    if int(repeats[lay.axis]) != 1:
        t.freeze(lay.units, f"Tile '{node.name}' repeats the channel axis")
        return
    t.set(node.output[0], lay)
