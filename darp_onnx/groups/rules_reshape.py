"""Rules for ops that regroup axes: Reshape, Flatten, Squeeze, Unsqueeze, Transpose.

They are all handled as a reshape between two shapes known from shape inference: the tracked axis must
survive as one output axis whose unit blocks stay contiguous (NCHW -> N,(C*H*W) gives repeat H*W) or
repeat as a whole (NHWC -> N,(H*W*C) gives tile H*W). Symbolic dims (batch) take part in the products
by name.
"""

from __future__ import annotations

from dataclasses import replace
from math import prod

import onnx

from darp_onnx.groups import rules_attention as attention
from darp_onnx.groups import shape_values as sv
from darp_onnx.groups.dims import Prod as _Prod
from darp_onnx.groups.rules_basic import attr
from darp_onnx.groups.tracer import Layout, Tracer


def map_reshape(in_shape, lay: Layout, out_shape) -> tuple[Layout | None, str]:
    """Where `lay` lands after reshaping `in_shape` to `out_shape` (row-major), or (None, reason).

    The channel axis lands on output axis s when the elements after s (tail) divide the flat stride
    of one unit and axis s spans whole copies of the channel axis: unit u then sits at blocks of
    stride/tail (the new repeat) in each of span/(channel axis extent) copies (the new tile)."""
    if in_shape is None or out_shape is None:
        return None, "shape unknown"
    axis = lay.axis
    same = _same_axis(in_shape, axis, out_shape, lay)
    if same is not None:
        return same, ""
    if None in in_shape or None in out_shape:
        return None, "shape unknown"
    unit = _Prod([lay.repeat, *in_shape[axis + 1:]])
    extent = _Prod([lay.size, *in_shape[axis + 1:]])
    for s in range(len(out_shape)):
        if out_shape[s] == 1:
            continue
        repeat = unit.over(_Prod(out_shape[s + 1:]))
        copies = _Prod(out_shape[s:]).over(extent)
        if repeat and copies:
            return Layout(s, lay.units, repeat, lay.tile * copies), ""
    if _Prod(in_shape[axis + 1:]).symbols:
        return None, "symbolic dims after the channel axis"
    return None, "reshape splits the channel axis"


def _same_axis(in_shape, axis: int, out_shape, lay: Layout) -> Layout | None:
    """The channel axis kept whole at the same flat position (the dims after it may be unknown)."""
    lead = in_shape[:axis]
    if None in lead or lay.size == 1:
        return None
    outer = _Prod(lead)
    for s in range(len(out_shape)):
        if None in out_shape[:s]:
            return None
        if _Prod(out_shape[:s]) == outer and out_shape[s] == lay.size:
            return lay.moved(s)
    return None


def _regroup(t: Tracer, node: onnx.NodeProto, target=None) -> Layout | None:
    lay = t.layout(node.input[0])
    if lay is None:
        return None
    in_shape = t.shape(node.input[0])
    new, reason = map_reshape(in_shape, lay, t.shape(node.output[0]))
    computed = None
    if new is None and target is not None:
        computed = _target_shape(in_shape, target, int(attr(node, "allowzero", 0)))
        new = map_reshape(in_shape, lay, computed)[0] if computed is not None else None
    if new is None:
        out_shape = t.shape(node.output[0])
        _request_group_blocks(t, in_shape, lay, computed if out_shape is None or None in out_shape else out_shape)
        t.freeze(lay.units, f"{reason} at node '{node.name}' ({node.op_type})")
    return new


def _request_group_blocks(t: Tracer, in_shape, lay: Layout, out_shape) -> None:
    """A channel axis split into groups of k channels, the rest merged into the next axis (torch's GroupNorm:
    Reshape [N, C, H, W] -> [N, G, C/G * H * W]): the next pass makes the channels' sources prune in blocks
    of k (groups.blocks), which this Reshape then follows."""
    if lay.repeat != 1 or lay.tile != 1 or in_shape is None or out_shape is None or None in in_shape[:lay.axis + 1]:
        return
    outer = _Prod(in_shape[:lay.axis])
    for s in range(len(out_shape) - 1):
        if None in out_shape[:s + 1] or _Prod(out_shape[:s]) != outer:
            continue
        groups = out_shape[s]
        if isinstance(groups, int) and 1 < groups < lay.size and lay.size % groups == 0:
            t.block_requests.append((lay.units, lay.size // groups))
        return


def _target_shape(in_shape, target, allowzero: int, resolve=lambda symbol: symbol):
    """The output shape a Reshape target vector gives, where shape inference left dims unknown:
    integers and single symbols; None for a dim we cannot name. `resolve` names each symbol as the tracer
    knows it (aliases)."""
    if in_shape is None or None in in_shape:
        return None
    dims: list = []
    for j, e in enumerate(target):
        if e.symbols:
            e = replace(e, symbols=tuple(resolve(s) for s in e.symbols))
        if e.literal and e.coef == 0 and not allowzero and j < len(in_shape):
            dims.append(_Prod([in_shape[j]]))
        elif e.literal and e.coef == -1:
            dims.append(-1)
        elif e.coef is not None and e.coef.denominator == 1:
            value = int(e.coef) * prod(r.layout.size for r in e.refs)
            dims.append(_Prod(e.symbols, value=value))
        else:
            dims.append(None)
    inferred = [j for j, d in enumerate(dims) if isinstance(d, int)]
    if len(inferred) == 1 and None not in dims:
        known = _Prod()
        for d in dims:
            if isinstance(d, _Prod):
                known = _Prod(value=known.value * d.value, symbols=known.symbols + d.symbols)
        total = _Prod(in_shape)
        rest = total.symbols - known.symbols
        if known.symbols - total.symbols or known.value == 0 or total.value % known.value:
            return None
        dims[inferred[0]] = _Prod(value=total.value // known.value, symbols=rest)
    return tuple(_as_dim(d) for d in dims)


def _as_dim(d):
    if not isinstance(d, _Prod):
        return None
    if not d.symbols:
        return d.value
    names = list(d.symbols.elements())
    return names[0] if d.value == 1 and len(names) == 1 else None


def flatten_like(t: Tracer, node: onnx.NodeProto) -> None:
    """Flatten, Squeeze, Unsqueeze: no shape constant carries a channel count."""
    new = _regroup(t, node)
    if new is not None:
        t.set(node.output[0], new)


def reshape(t: Tracer, node: onnx.NodeProto) -> None:
    """The target may be a constant or a shape vector computed at run time (see shape_values): the
    element at the channel axis must follow the kept channels, every other element stay put."""
    lay = t.layout(node.input[0])
    target = sv.value_of(t, node.input[1], (node.name, 1))
    out_shape = t.shape(node.output[0])
    if target is not None:
        _unify_copied_dims(t, out_shape, target)
        out_shape = t.shape(node.output[0])
        computed = _target_shape(t.shape(node.input[0]), target, int(attr(node, "allowzero", 0)), t.resolved)
        if computed is not None and None not in computed:
            if out_shape is None or None in out_shape:  # shape inference gave up
                t.shapes[node.output[0]] = computed
            else:
                t.unify(out_shape, computed)
    if lay is None and node.input[0] in t.merged:
        lay = t.merged[node.input[0]][0]
        new = attention.split_from_batch(t, node, target)
        if new is None:
            t.freeze(lay.units, f"Reshape '{node.name}' does not split the heads back out of the batch")
            sv.freeze_refs(t, target, f"Reshape '{node.name}' is not followed")
        else:
            t.set(node.output[0], new)
        return
    if lay is None:
        sv.freeze_refs(t, target, f"Reshape '{node.name}' sizes untracked data with a channel count")
        return
    if attention.merge_with_batch(t, node, lay, target):
        return
    new = attention.split_heads(t, node, lay, t.shape(node.input[0]), t.shape(node.output[0]))
    new = new or _regroup(t, node, target)
    if new is None:
        sv.freeze_refs(t, target, f"Reshape '{node.name}' is not followed")
        return
    if target is None:
        t.freeze(lay.units, f"Reshape '{node.name}' target computed at run time is not followed")
        return
    problem = target_problem(t, node, target, lay, new)
    if problem:
        t.freeze(lay.units, f"Reshape '{node.name}' {problem}")
        sv.freeze_refs(t, target, f"Reshape '{node.name}' {problem}")
        return
    t.set(node.output[0], new)


def _unify_copied_dims(t: Tracer, out_shape, target) -> None:
    """A target element that is one symbolic dim read at run time (the sequence length, from a Shape) names the
    output dim shape inference put there: TorchScript's BERT merges its heads back with [batch, -1, seq, 64]
    where seq was read as 'unk__3' and the tensor's dim is named 'unk__19'."""
    if out_shape is None or len(out_shape) != len(target):
        return
    for dim, e in zip(out_shape, target, strict=True):
        if isinstance(dim, str) and len(e.symbols) == 1 and e.coef == 1 and not e.refs:
            t.unify((dim,), (e.symbols[0],))


def target_problem(t: Tracer, node: onnx.NodeProto, target, lay: Layout, new: Layout) -> str:
    allowzero = int(attr(node, "allowzero", 0))
    key = (node.output[0], new.axis)
    for j, e in enumerate(target):
        if e.literal and e.coef == 0 and not allowzero:  # copies input dim j
            if j == lay.axis and (j != new.axis or (new.repeat, new.tile) != (lay.repeat, lay.tile)):
                return "copies the channel dim to another axis"
            if j == new.axis and j != lay.axis:
                return "copies a fixed dim onto the channel axis"
        elif j == new.axis:
            if not (e.literal and e.coef == -1) and not sv.follows_channels(t, node, e, new, key):
                return f"target element {j} does not follow the channel count"
        elif not sv.stays_fixed(t, e):
            return f"target element {j} reads a channel count at run time"
    return ""


def transpose(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    rank = t.rank(node.input[0])
    perm = attr(node, "perm")
    perm = list(perm) if perm is not None else list(reversed(range(rank or 0)))
    if node.input[0] in t.merged:  # heads merged into the batch stay there while it stays first
        merged = t.merged[node.input[0]]
        if perm and perm[0] == 0:
            t.merged[node.output[0]] = merged
        else:
            t.freeze(merged[0].units, f"Transpose '{node.name}' moves the batch axis that holds the heads")
        return
    if lay is None:
        return
    if lay.axis not in perm:
        t.freeze(lay.units, f"Transpose '{node.name}' permutation unknown")
        return
    t.set(node.output[0], lay.moved(perm.index(lay.axis)))
