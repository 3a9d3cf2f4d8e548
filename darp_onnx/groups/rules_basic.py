"""Rules for ops that keep channels where they are: pass-through, per-channel, couple, unknown."""

from __future__ import annotations

import onnx

from darp_onnx.groups.tracer import Layout, Tracer
from darp_onnx.load.attributes import attribute

attr = attribute  # the rule tables' short name for `load.attributes.attribute`


def unknown(t: Tracer, node: onnx.NodeProto) -> None:
    """An op nobody described: it may mix channels, so every tracked input is frozen."""
    t.freeze_inputs(node, "op not understood by the channel analysis")


def passthrough(t: Tracer, node: onnx.NodeProto) -> None:
    """Elementwise unary ops: every output keeps input 0's layout; other inputs must be untracked."""
    lay = t.layout(node.input[0]) if node.input else None
    if lay is None:
        if any(t.layout(n) is not None for n in node.input):
            unknown(t, node)
        return
    if any(t.layout(n) is not None for n in node.input[1:]):
        t.freeze_inputs(node, "tracked tensor in a scalar operand")
        return
    for out in node.output:
        t.set(out, lay)


def _cv():
    """const_views imports the reshape rules, which import this module: import it when first used."""
    from darp_onnx.groups import const_views

    return const_views


def _per_channel_vectors(t: Tracer, node: onnx.NodeProto, lay: Layout, positions: range) -> bool:
    """Bind the per-channel vectors (BN scale/bias/mean/var...) at `positions`; False if one is not
    a constant of the channel length."""
    cv = _cv()
    for pos in positions:
        if pos >= len(node.input) or not node.input[pos]:
            continue
        name = node.input[pos]
        other = t.layout(name)
        if other is not None:
            if not t.couple(lay, other.moved(lay.axis), node):
                return False
            continue
        value = cv.view_value(t, name)
        if value is None or value.ndim != 1 or value.shape[0] != lay.size or not cv.bind(t, name, 0, lay, node):
            return False
    return True


def channel_norm(t: Tracer, node: onnx.NodeProto) -> None:
    """BatchNormalization / InstanceNormalization: channel axis 1, per-channel vectors sliced."""
    lay = t.layout(node.input[0])
    if lay is None:
        if any(t.layout(n) is not None for n in node.input[1:]):
            unknown(t, node)
        return
    if lay.axis != 1 or not _per_channel_vectors(t, node, lay, range(1, len(node.input))):
        t.freeze_inputs(node, "normalisation parameters do not follow the channel axis")
        return
    t.set(node.output[0], lay)
    if any(node.output[1:]):
        t.freeze(lay.units, f"training outputs of node '{node.name}' are not followed")


def pooling(t: Tracer, node: onnx.NodeProto) -> None:
    """Pooling reduces spatial axes (>= 2) only; the channel axis 1 passes through."""
    lay = t.layout(node.input[0])
    if lay is None:
        return
    if lay.axis >= 2:
        t.freeze_inputs(node, "pooling over the channel axis")
        return
    t.set(node.output[0], lay)
    if len(node.output) > 1 and node.output[1]:
        t.freeze(lay.units, f"pooling indices of node '{node.name}' encode the channel count")


def grid_sample(t: Tracer, node: onnx.NodeProto) -> None:
    """GridSample moves each channel's values in space alike: channel axis 1 of X passes through; a grid
    computed from tracked channels holds coordinates, not channels."""
    lay, grid = t.layout(node.input[0]), t.layout(node.input[1])
    if grid is not None:
        t.freeze(grid.units, f"GridSample '{node.name}' reads them as sampling coordinates")
    if lay is None:
        return
    if lay.axis != 1:
        t.freeze(lay.units, f"GridSample '{node.name}' samples along the channel axis")
        return
    t.set(node.output[0], lay)


def prelu(t: Tracer, node: onnx.NodeProto) -> None:
    couple(t, node)


def couple(t: Tracer, node: onnx.NodeProto) -> None:
    """Broadcasting elementwise ops: tracked operands are unified, per-channel constants sliced along,
    size-1 (broadcast) operands ignored; anything else freezes the layouts."""
    out = node.output[0]
    ranks = [t.rank(n) if n else 0 for n in node.input]
    out_rank = t.rank(out)
    if out_rank is None or any(r is None for r in ranks):
        t.freeze_inputs(node, "operand ranks unknown")
        return
    pairs = zip(node.input, ranks, strict=True)
    tracked = [(n, t.layout(n), r) for n, r in pairs if n and t.layout(n) is not None]
    if not tracked:
        return
    positions = {lay.axis + out_rank - r for _, lay, r in tracked}
    if len(positions) != 1:
        t.freeze_inputs(node, "operands tracked on different axes")
        return
    pos = positions.pop()
    first = tracked[0][1]
    out_shape = t.shape(out)
    if out_shape is not None and out_shape[pos] not in (None, first.size) and isinstance(out_shape[pos], int):
        t.freeze_inputs(node, "broadcast changes the channel count")
        return
    for _, lay, _ in tracked[1:]:
        if not t.couple(first, lay, node):
            return
    cv = _cv()
    for name, rank in zip(node.input, ranks, strict=False):
        if not name or t.layout(name) is not None:
            continue
        axis = pos - (out_rank - rank)
        dim = t.shape(name)[axis] if axis >= 0 and t.shape(name) is not None else 1
        if dim == 1:
            continue
        if dim == first.size and cv.bindable(t, name) and cv.bind(t, name, axis, first, node):
            continue
        t.freeze_inputs(node, _not_per_channel(t, name))
        return
    t.set(out, first.moved(pos))


HIDDEN_SIZE = ("hidden size not pruned: removing channels would change the mean and variance LayerNormalization "
               "divides every token by")


def _not_per_channel(t: Tracer, name: str) -> str:
    producer = t.producer.get(name)
    if producer is not None and producer.op_type == "LayerNormalization":
        return f"operand '{name}' comes from LayerNormalization '{producer.name}': {HIDDEN_SIZE}"
    if producer is None and t.const(name) is None:
        return f"operand '{name}' is a graph input: its channels are fixed"
    return f"operand '{name}' is not per-channel"
