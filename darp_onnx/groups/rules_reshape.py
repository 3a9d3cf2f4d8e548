"""Rules for ops that regroup axes: Reshape, Flatten, Squeeze, Unsqueeze, Transpose.

They are all handled as a reshape between two shapes known from shape inference: the tracked axis must
survive as one output axis whose unit blocks stay contiguous (NCHW -> N,(C*H*W) gives repeat H*W).
Symbolic dims (batch) take part in the products by name.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx

from darp_onnx.groups.model import ShapeEdit
from darp_onnx.groups.rules_basic import attr
from darp_onnx.groups.tracer import Layout, Tracer


class _Prod:
    """A product of dims: an integer times a multiset of symbols."""

    def __init__(self, dims) -> None:
        self.value, self.symbols = 1, Counter()
        for d in dims:
            if isinstance(d, str):
                self.symbols[d] += 1
            else:
                self.value *= int(d)

    def __eq__(self, other) -> bool:
        return self.value == other.value and self.symbols == other.symbols


def map_reshape(in_shape, lay: Layout, out_shape) -> tuple[Layout | None, str]:
    """Where `lay` lands after reshaping `in_shape` to `out_shape`, or (None, reason)."""
    if in_shape is None or out_shape is None or None in in_shape or None in out_shape:
        return None, "shape unknown"
    axis = lay.axis
    outer, inner = _Prod(in_shape[:axis]), _Prod(in_shape[axis + 1:])
    if inner.symbols:
        return None, "symbolic dims after the channel axis"
    chunk = lay.repeat * inner.value
    for s in range(len(out_shape)):
        if _Prod(out_shape[:s]) == outer and out_shape[s] != 1:
            tail = _Prod(out_shape[s + 1:])
            if tail.symbols or not isinstance(out_shape[s], int) or chunk % tail.value:
                return None, "reshape splits the channel axis (heads are not followed)"
            rep = chunk // tail.value
            if out_shape[s] != len(lay.units) * rep:
                return None, "reshape merges the channel axis with a leading axis"
            return Layout(s, lay.units, rep), ""
    return None, "channel axis not found after reshape"


def _regroup(t: Tracer, node: onnx.NodeProto) -> Layout | None:
    lay = t.layout(node.input[0])
    if lay is None:
        return None
    new, reason = map_reshape(t.shape(node.input[0]), lay, t.shape(node.output[0]))
    if new is None:
        t.freeze(lay.units, f"{reason} at node '{node.name}' ({node.op_type})")
    return new


def flatten_like(t: Tracer, node: onnx.NodeProto) -> None:
    """Flatten, Squeeze, Unsqueeze: no shape constant carries a channel count."""
    new = _regroup(t, node)
    if new is not None:
        t.set(node.output[0], new)


def reshape(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    new = _regroup(t, node)
    if new is None:
        return
    target = t.const(node.input[1])
    if target is None:
        t.freeze(lay.units, f"Reshape '{node.name}' target computed at run time is not followed")
        return
    target = np.asarray(target).reshape(-1)
    allowzero = int(attr(node, "allowzero", 0))
    copies_channel = not allowzero and lay.axis < len(target) and target[lay.axis] == 0
    value = target[new.axis]
    if value == 0 and not allowzero:
        ok = new.axis == lay.axis and new.repeat == lay.repeat
    else:
        ok = not copies_channel
    if not ok:
        t.freeze(lay.units, f"Reshape '{node.name}' copies the channel dim to another axis")
        return
    if value not in (0, -1):
        t.edit(ShapeEdit(node.name, 1, int(new.axis), (node.output[0], new.axis), 0, new.size))
    t.set(node.output[0], new)


def transpose(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    rank = t.rank(node.input[0])
    perm = attr(node, "perm")
    perm = list(perm) if perm is not None else list(reversed(range(rank or 0)))
    if lay.axis not in perm:
        t.freeze(lay.units, f"Transpose '{node.name}' permutation unknown")
        return
    t.set(node.output[0], lay.moved(perm.index(lay.axis)))
