"""Rules for ops that act along one named axis (freeze when it is the channel axis) and for ops whose
shape constants index the channel axis: Softmax, LayerNorm, Reduce*, ArgMax, Shape, Resize, Pad,
Expand, Tile."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.groups import const_views as cv
from darp_onnx.groups import shape_values as sv
from darp_onnx.groups.model import ShapeEdit
from darp_onnx.groups.rules_basic import HIDDEN_SIZE, attr
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


def reverse_sequence(t: Tracer, node: onnx.NodeProto) -> None:
    """Steps reordered along the time axis, per batch entry: channels on any other axis pass through."""
    lay = t.layout(node.input[0])
    if lay is None:
        return
    if lay.axis in (int(attr(node, "batch_axis", 1)), int(attr(node, "time_axis", 0))):
        t.freeze(lay.units, f"ReverseSequence '{node.name}' reorders the channel axis")
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
        t.freeze(lay.units, f"LayerNormalization '{node.name}' normalises over the channel axis ({HIDDEN_SIZE})")
        return
    t.set(node.output[0], lay)


def _reduce_axes(t: Tracer, node: onnx.NodeProto, rank: int) -> list[int] | None:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = cv.view_value(t, node.input[1])
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
    """Shape/Size are followed as shape vectors (shape_values.visit); only a tracked tensor whose shape
    is unknown cannot be followed."""
    lay = t.layout(node.input[0])
    if lay is not None and node.output[0] not in t.shape_values:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' reads a shape the analysis does not know")


def _shape_arg(t: Tracer, node: onnx.NodeProto, lay: Layout, pos: int, what: str):
    value = cv.view_value(t, node.input[pos]) if len(node.input) > pos and node.input[pos] else None
    if value is None:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' {what} computed at run time")
    return None if value is None else np.ravel(value)


def _channel_vector(t: Tracer, node: onnx.NodeProto, pos: int, j: int, new: Layout,
                    fixed_value: int | None = None, follow: bool = True) -> str:
    """Check shape-vector input `pos` whose element `j` sizes the channel axis (to `new`) after pruning
    or stays `fixed_value` (`follow` False: only that); every other element must stay put. Returns a
    problem or ''."""
    elems = sv.value_of(t, node.input[pos], (node.name, pos)) if len(node.input) > pos else None
    if elems is None:
        return "shape computed at run time is not followed"
    for k, e in enumerate(elems):
        if k == j:
            if fixed_value is not None and e.literal and e.coef == fixed_value:
                sv.stays_fixed(t, e)
            elif not follow or not sv.follows_channels(t, node, e, new, (node.output[0], new.axis)):
                return f"element {k} of input {pos} does not follow the channel count"
        elif not sv.stays_fixed(t, e):
            return f"element {k} of input {pos} reads a channel count at run time"
    return ""


def _refuse(t: Tracer, node: onnx.NodeProto, lay: Layout | None, pos: int, problem: str) -> None:
    reason = f"{node.op_type} '{node.name}': {problem}"
    if lay is not None:
        t.freeze(lay.units, reason)
    if len(node.input) > pos:
        sv.freeze_refs(t, sv.value_of(t, node.input[pos]), reason)


def resize(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        if len(node.input) > 3:
            sv.freeze_refs(t, sv.value_of(t, node.input[3]), f"Resize '{node.name}' sizes untracked data "
                           "with a channel count")
        return
    if lay.axis >= 2:
        t.freeze(lay.units, f"{node.op_type} '{node.name}' resizes the channel axis")
        return
    scales_pos = 1 if (node.op_type == "Upsample" or t.opset < 11) else 2
    has_scales = len(node.input) > scales_pos and node.input[scales_pos]
    scales = cv.view_value(t, node.input[scales_pos]) if has_scales else None
    if scales is not None and np.ravel(scales).size:
        if float(np.ravel(scales)[lay.axis]) != 1.0:
            t.freeze(lay.units, f"{node.op_type} '{node.name}' scales the channel axis")
            return
    elif node.op_type == "Upsample" and attr(node, "scales") is not None:
        if float(attr(node, "scales")[lay.axis]) != 1.0:
            t.freeze(lay.units, f"Upsample '{node.name}' scales the channel axis")
            return
    else:
        if len(node.input) < 4 or not node.input[3] or attr(node, "axes") is not None:
            _refuse(t, node, lay, 3, "neither scales nor plain sizes")
            return
        problem = _channel_vector(t, node, 3, lay.axis, lay)
        if problem:
            _refuse(t, node, lay, 3, problem)
            return
    t.set(node.output[0], lay)


def pad(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    if lay is None:
        return
    pads = attr(node, "pads") if t.opset < 11 else _shape_arg(t, node, lay, 1, "pads")
    axes = None if t.opset < 18 or len(node.input) < 4 or not node.input[3] else cv.view_value(t, node.input[3])
    axes_unknown = t.opset >= 18 and len(node.input) > 3 and node.input[3] and axes is None
    if pads is None or rank is None or axes_unknown:
        t.freeze(lay.units, f"Pad '{node.name}' pads unknown")
        return
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in np.ravel(axes)]
    n = len(axes)
    if lay.axis in axes and (int(pads[axes.index(lay.axis)]) or int(pads[axes.index(lay.axis) + n])):
        _pad_channels(t, node, lay, axes.index(lay.axis), n, pads)
        return
    t.set(node.output[0], lay)


def _pad_channels(t: Tracer, node: onnx.NodeProto, lay: Layout, j: int, n: int, pads) -> None:
    """Constant channels padded on (a shortcut widened to its block's width: MediaPipe's BlazeBlocks,
    dlib's ResNets) are channels of their own: each one goes with whatever it is added to, and the pad
    counts become the numbers of padded channels kept."""
    before, after = int(pads[j]), int(pads[j + n])
    mode = attr(node, "mode", b"constant")
    source = _pads_source(t, node)
    problem = ("its mode is not constant" if mode not in (b"constant", "constant")
               else "it crops" if min(before, after) < 0
               else "channels interleaved with other axes" if lay.repeat != 1 or lay.tile != 1
               else "its pads are computed at run time" if source is None else "")
    if problem:
        t.freeze(lay.units, f"Pad '{node.name}' pads the channel axis and {problem}")
        return
    units = [t.new_atom(before, f"{node.name} padded before ({before})")] if before else []
    units += [lay.units]
    units += [t.new_atom(after, f"{node.name} padded ({after})")] if after else []
    out = Layout(lay.axis, np.concatenate(units))
    t.set(node.output[0], out)
    key, end = (node.output[0], lay.axis), before + lay.size
    for element, lo, hi in ((j, 0, before), (j + n, end, end + after)):
        t.edit(ShapeEdit(source[0], source[1], element, key, lo, hi, attr=source[2]))


def _pads_source(t: Tracer, node: onnx.NodeProto) -> tuple[str, int, str] | None:
    """Where the pad counts can be rewritten: the `pads` attribute (opset < 11) or a constant input."""
    if t.opset < 11:
        return node.name, -1, "pads"
    return (node.name, 1, "") if t.const(node.input[1]) is not None else None


def expand(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank, out_rank = t.rank(node.input[0]), t.rank(node.output[0])
    elems = sv.value_of(t, node.input[1], (node.name, 1))
    if elems is None or rank is None or out_rank is None:
        _refuse(t, node, lay, 1, "shape computed at run time is not followed")
        return
    offset = out_rank - len(elems)
    _complete_expand_shape(t, node, elems, out_rank)
    if lay is None:
        shape = t.shape(node.input[0])
        created, ok = sv.created_layout(t, elems, offset, lambda p: shape[p - (out_rank - rank)]
                                        if p - (out_rank - rank) >= 0 else 1)
        if not ok:
            _refuse(t, node, None, 1, "broadcasts to a channel count it cannot follow")
        elif created is not None:
            t.set(node.output[0], created)
        return
    pos = lay.axis + out_rank - rank
    problem = _channel_vector(t, node, 1, pos - offset, lay.moved(pos), fixed_value=1)
    if problem:
        _refuse(t, node, lay, 1, problem)
        return
    t.set(node.output[0], lay.moved(pos))


def _complete_expand_shape(t: Tracer, node: onnx.NodeProto, elems, out_rank: int) -> None:
    """Shape inference names the dims of an Expand to a computed shape afresh; the literal elements give
    them (TorchScript's `mask.expand(-1, H, -1, -1)`: H)."""
    data, out = t.shape(node.input[0]), t.shape(node.output[0])
    if data is None or out is None or len(out) != out_rank:
        return
    known = list(out)
    for p in range(out_rank):
        e = elems[p - (out_rank - len(elems))] if p >= out_rank - len(elems) else None
        d = data[p - (out_rank - len(data))] if p >= out_rank - len(data) else 1
        if e is not None and e.literal and e.coef not in (0, 1):
            known[p] = int(e.coef) if d in (1, int(e.coef)) else known[p]
        elif (e is None or e.literal and e.coef == 1) and d is not None:
            known[p] = d
    if None not in known:
        t.unify(out, known)
        t.shapes[node.output[0]] = tuple(known)


def constant_of_shape(t: Tracer, node: onnx.NodeProto) -> None:
    """A filled tensor whose size along one axis is a tracked channel count gets that axis's layout."""
    elems = sv.value_of(t, node.input[0], (node.name, 0))
    if elems is None:
        return
    created, ok = sv.created_layout(t, elems, 0)
    if not ok:
        _refuse(t, node, None, 0, "fills a shape it cannot follow")
    elif created is not None:
        t.set(node.output[0], created)


def tile(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        sv.freeze_refs(t, sv.value_of(t, node.input[1]), f"Tile '{node.name}' repeats by a channel count")
        return
    problem = _channel_vector(t, node, 1, lay.axis, lay, fixed_value=1, follow=False)
    if problem:
        _refuse(t, node, lay, 1, problem if "follow" not in problem else "repeats the channel axis")
        return
    t.set(node.output[0], lay)
