"""Rules for ops that cut or join the channel axis (Concat, Split, Slice) or index other axes."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.groups import const_views as cv
from darp_onnx.groups import shape_values as sv
from darp_onnx.groups.model import ShapeEdit
from darp_onnx.groups.rules_basic import attr, couple
from darp_onnx.groups.tracer import Layout, Tracer


def _axis(node: onnx.NodeProto, rank: int | None, default: int = 0) -> int | None:
    axis = int(attr(node, "axis", default))
    if axis < 0:
        return None if rank is None else axis + rank
    return axis


def concat(t: Tracer, node: onnx.NodeProto) -> None:
    tracked = [t.layout(n) for n in node.input if t.layout(n) is not None]
    if not tracked:
        return
    axis = _axis(node, t.rank(node.output[0]))
    if axis is None or any(lay.axis != axis for lay in tracked):
        if axis is not None and all(lay.axis != axis for lay in tracked):
            couple(t, node)  # joined along another axis: the channel axis is shared
        else:
            t.freeze_inputs(node, "Concat mixes the channel axis with another axis")
        return
    if any(lay.tile != 1 for lay in tracked):
        t.freeze_inputs(node, "Concat of channels interleaved with other axes")
        return
    rep = tracked[0].repeat
    parts = []
    for name in node.input:
        lay = t.layout(name)
        shape = t.shape(name)
        if lay is not None and lay.repeat == rep:
            parts.append(lay.units)
        elif lay is None and shape is not None and isinstance(shape[axis], int) and shape[axis] % rep == 0:
            parts.append(np.full(shape[axis] // rep, -1, dtype=np.int64))
        else:
            wide = max(lay.repeat for lay in tracked)  # channels in blocks (GroupNorm's) beside finer ones:
            for fine in (lay for lay in tracked if lay.repeat == 1 and lay.size % wide == 0):
                t.block_requests.append((fine.units, wide))  # the next pass makes them blocks alike
            t.freeze_inputs(node, "Concat inputs have incompatible channel blocks")
            return
    t.set(node.output[0], Layout(axis, np.concatenate(parts), rep))


def _split_sizes(t: Tracer, node: onnx.NodeProto, total: int) -> tuple[list[int] | None, int]:
    """The split sizes and where they live: 1 (input), -1 (attribute), 0 (implicit equal split)."""
    if len(node.input) > 1 and node.input[1]:
        sizes = t.const(node.input[1])
        return (None if sizes is None else [int(v) for v in np.asarray(sizes).reshape(-1)]), 1
    if attr(node, "split") is not None:
        return [int(v) for v in attr(node, "split")], -1
    n = len(node.output)
    chunk = -(-total // n)
    return [min(chunk, total - i * chunk) for i in range(n)], 0


def split(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    axis = _axis(node, t.rank(node.input[0]))
    if axis != lay.axis:
        if axis is None:
            t.freeze(lay.units, f"Split '{node.name}' axis unknown")
            return
        for out in node.output:
            t.set(out, lay)
        return
    if lay.tile != 1:
        t.freeze(lay.units, f"Split '{node.name}' cuts channels interleaved with other axes")
        return
    sizes, where = _split_sizes(t, node, lay.size)
    bad = sizes is None or len(sizes) != len(node.output) or sum(sizes) != lay.size
    if bad or any(s % lay.repeat for s in sizes):
        t.freeze(lay.units, f"Split '{node.name}' sizes are not followed")
        return
    offset = 0
    for i, (out, size) in enumerate(zip(node.output, sizes, strict=True)):
        units = lay.units[offset // lay.repeat:(offset + size) // lay.repeat]
        offset += size
        t.set(out, Layout(axis, units, lay.repeat))
        if where == 0:
            where = 1 if t.opset >= 13 else -1
        t.edit(ShapeEdit(node.name, where, i, (out, axis), 0, size, attr="split" if where == -1 else ""))


def _computed_bound(t: Tracer, name: str) -> np.ndarray | None:
    """Slice starts/ends computed at run time from sizes only (torch's `chunk`: (C + 2) // 3 * k): their
    values before pruning, when no symbolic dim enters them."""
    elems = sv.value_of(t, name)
    if not elems or any(e.current is None or e.current.denominator != 1 for e in elems):
        return None
    return np.array([int(e.current) for e in elems], dtype=np.int64)


def _slice_params(t: Tracer, node: onnx.NodeProto, rank: int):
    if t.opset < 10:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes, steps = attr(node, "axes"), None
    else:
        vals = [cv.view_value(t, n) if n else None for n in list(node.input[1:]) + [""] * (5 - len(node.input))]
        if (len(node.input) > 3 and node.input[3] and vals[2] is None) or (
                len(node.input) > 4 and node.input[4] and vals[3] is None):
            return None
        starts, ends, axes, steps = vals[0], vals[1], vals[2], vals[3]
        starts = _computed_bound(t, node.input[1]) if starts is None else starts
        ends = _computed_bound(t, node.input[2]) if ends is None and len(node.input) > 2 else ends
    if starts is None or ends is None:
        return None
    starts, ends = [int(v) for v in np.ravel(starts)], [int(v) for v in np.ravel(ends)]
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in np.ravel(axes)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.ravel(steps)]
    return starts, ends, axes, steps


def slice_(t: Tracer, node: onnx.NodeProto) -> None:
    """Bounds computed from channel counts at run time are followed on the channel axis only (they become
    constants there); anywhere else the counts they read are frozen."""
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    bound_refs = [e for pos in (1, 2) if t.opset >= 10 and len(node.input) > pos
                  for e in sv.value_of(t, node.input[pos]) or []]
    if lay is None:
        sv.freeze_refs(t, bound_refs, f"Slice '{node.name}' bounds read a channel count at run time")
        return
    params = None if rank is None else _slice_params(t, node, rank)
    if params is None:
        t.freeze(lay.units, f"Slice '{node.name}' parameters computed at run time")
        sv.freeze_refs(t, bound_refs, f"Slice '{node.name}' parameters computed at run time")
        return
    starts, ends, axes, steps = params
    if lay.axis not in axes or not _bounds_vary_on(t, node, axes.index(lay.axis) if lay.axis in axes else -1):
        sv.freeze_refs(t, bound_refs, f"Slice '{node.name}' bounds off the channel axis read a channel count")
    if lay.axis not in axes:
        t.set(node.output[0], lay)
        return
    j = axes.index(lay.axis)
    size = lay.size
    start = starts[j] + size if starts[j] < 0 else starts[j]
    end = ends[j] + size if ends[j] < 0 else ends[j]
    start, end = min(max(start, 0), size), min(max(end, 0), size)
    if steps[j] == 1 and (start, end) == (0, size):  # the whole axis: bounds clamp to the pruned size
        t.set(node.output[0], lay)
        return
    if steps[j] != 1 or lay.tile != 1 or start % lay.repeat or end % lay.repeat or end <= start:
        t.freeze(lay.units, f"Slice '{node.name}' on the channel axis is strided or misaligned")
        return
    key = (node.input[0], lay.axis)
    if t.opset < 10:
        t.edit(ShapeEdit(node.name, -1, j, key, 0, start, attr="starts"))
        t.edit(ShapeEdit(node.name, -1, j, key, 0, end, attr="ends"))
    else:
        for pos, bound in ((1, start), (2, end)):
            computed = _computed_bound(t, node.input[pos]) if cv.view_value(t, node.input[pos]) is None else None
            source = None if computed is not None else _bound_source(t, node, pos, j)
            if computed is None and source is None:
                t.freeze(lay.units, f"Slice '{node.name}' bounds on the channel axis are computed")
                return
            base = () if computed is None else tuple(int(v) for v in computed)
            t.edit(ShapeEdit(*(source or (node.name, pos, j)), key, 0, bound, base=base))
    t.set(node.output[0], Layout(lay.axis, lay.units[start // lay.repeat:end // lay.repeat], lay.repeat))
    _complete_shape(t, node, axes, lay.axis, end - start)


def _complete_shape(t: Tracer, node: onnx.NodeProto, axes: list[int], axis: int, size: int) -> None:
    """Shape inference names every dim of a Slice with computed bounds afresh: the channel axis has `size`,
    the axes it does not slice keep the input's dims."""
    in_shape, out_shape = t.shape(node.input[0]), t.shape(node.output[0])
    if in_shape is None or out_shape is None or len(in_shape) != len(out_shape):
        return
    known = tuple(size if k == axis else in_shape[k] if k not in axes else out_shape[k] for k in range(len(out_shape)))
    t.unify(out_shape, known)
    t.shapes[node.output[0]] = known


def _bounds_vary_on(t: Tracer, node: onnx.NodeProto, j: int) -> bool:
    """True when only element `j` (the channel axis) of the computed starts/ends reads channel counts."""
    for pos in (1, 2):
        elems = sv.value_of(t, node.input[pos]) if len(node.input) > pos else None
        if elems and any(e.varies for k, e in enumerate(elems) if k != j):
            return False
    return True


def _bound_source(t: Tracer, node: onnx.NodeProto, pos: int, j: int) -> tuple[str, int, int] | None:
    """Where element `j` of Slice input `pos` can be rewritten: the constant itself, or the constant
    behind a view only this Slice reads (Unsqueeze of a scalar Constant)."""
    if t.const(node.input[pos]) is not None:
        return node.name, pos, j
    elems = sv.value_of(t, node.input[pos])
    source = elems[j].source if elems is not None and j < len(elems) and elems[j].literal else None
    if source is None or source in t.literal_slots or len(t.consumers.get(node.input[pos], [])) != 1:
        return None
    producer = t.producer[node.input[pos]]
    if producer.name != source[0]:  # the edit gives the view's node a fresh constant of its own
        return None
    t.literal_slots[source] = None  # pinned for every other reader: this edit is the Slice's own
    return source


def gather(t: Tracer, node: onnx.NodeProto) -> None:
    """Gather on another axis keeps the channel axis (shifted by the indices' rank)."""
    lay = t.layout(node.input[0])
    if lay is None:
        if t.layout(node.input[1]) is not None:
            t.freeze_inputs(node, "channels used as gather indices")
        return
    axis = _axis(node, t.rank(node.input[0]))
    idx_rank = t.rank(node.input[1])
    if axis is None or axis == lay.axis or idx_rank is None:
        t.freeze(lay.units, f"Gather '{node.name}' picks channels")
        return
    t.set(node.output[0], lay if lay.axis < axis else lay.moved(lay.axis + idx_rank - 1))
