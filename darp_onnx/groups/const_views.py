"""Per-channel constants seen through views: paddle2onnx writes a Conv bias as `Add(conv, Reshape(b, [1,
C, 1, 1]))`, other exporters Unsqueeze a BatchNorm-like vector before a Mul. The vector is the constant
to slice; the Reshape target's channel element is rewritten with it."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.groups import shape_values as sv
from darp_onnx.groups.rules_reshape import map_reshape, target_problem
from darp_onnx.groups.tracer import Layout, Tracer

VIEW_OPS = ("Reshape", "Unsqueeze", "Squeeze", "Identity", "Cast", "Flatten")  # keep the row-major order


def view_value(t: Tracer, name: str) -> np.ndarray | None:
    """The value of `name` when it is a constant or a view of one (None otherwise)."""
    value = t.const(name)
    if value is not None or not name:
        return value
    node = t.producer.get(name)
    shape = t.shape(name)
    if node is None or node.op_type not in VIEW_OPS or node.domain not in ("", "ai.onnx"):
        return None
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    if any(t.const(n) is None for n in node.input[1:] if n):
        return None
    source = view_value(t, node.input[0])
    if source is None or source.size != int(np.prod(shape)):
        return None
    return source.reshape(shape)


def bindable(t: Tracer, name: str) -> bool:
    """A constant, a view of one, a filled tensor (ConstantOfShape: zero initial states) or untracked data
    broadcast by Expand (an attention mask expanded to every head)."""
    producer = t.producer.get(name)
    filled = producer is not None and producer.op_type in ("ConstantOfShape", "Expand") and producer.domain in (
        "", "ai.onnx")
    return filled or view_value(t, name) is not None


def bind(t: Tracer, name: str, axis: int, layout: Layout, node: onnx.NodeProto) -> bool:
    """Slice constant (or view of a constant) `name` along `axis` like `layout`; False when the view
    cannot follow (the caller freezes)."""
    if t.const(name) is not None:
        t.bind_const(name, axis, layout, node)
        return True
    if t.layout(name) is not None:  # bound before through another reader (a table's rows read by every layer)
        return t.layout(name).axis == axis % max(t.rank(name) or 1, 1) and t.couple(t.layout(name), layout, node)
    view = t.producer.get(name)
    if view is not None and view.op_type == "ConstantOfShape" and t.rank(name):
        return _bind_filled(t, view, axis % t.rank(name), layout)
    if view is not None and view.op_type == "Expand" and t.rank(name):
        return _bind_expanded(t, view, axis % t.rank(name), layout)
    if view is not None and view.op_type in CARRY_OPS and view.domain in ("", "ai.onnx") and t.rank(name):
        return _bind_carried(t, view, axis % t.rank(name), layout)
    if view is None or view_value(t, name) is None:
        return False
    new = layout.moved(axis % len(t.shape(name)))
    mapped, _ = map_reshape(t.shape(name), new, view_value(t, view.input[0]).shape)
    if mapped is None:
        return False
    if view.op_type == "Reshape":
        target = sv.value_of(t, view.input[1], (view.name, 1))
        if target is None or target_problem(t, view, target, mapped, new):
            return False
    if not bind(t, view.input[0], mapped.axis, mapped, view):
        return False
    t.set(name, new)
    return True


CARRY_OPS = ("Transpose", "Unsqueeze", "Gather")  # move a stored table's columns without mixing them


def _bind_carried(t: Tracer, node: onnx.NodeProto, axis: int, layout: Layout) -> bool:
    """Rows of a stored table gathered at run time, transposed and unsqueezed (MPNet's and T5's relative
    position bias: Gather(table [buckets, heads]) -> Transpose -> Unsqueeze -> Expand, added to every layer's
    attention scores): the table's column axis follows the heads. The heads froze ("operand ... is not
    per-channel")."""
    readers = t.consumers.get(node.output[0], [])
    if any(c.name in t.visited and c.op_type not in (*CARRY_OPS, "Expand") for c in readers):
        return False  # a node already read it as fixed (the chain's own ops read no size)
    source_axis = _carried_axis(t, node, axis)
    if source_axis is None or not bind(t, node.input[0], source_axis, layout, node):
        return False
    t.set(node.output[0], layout.moved(axis))
    return True


def _carried_axis(t: Tracer, node: onnx.NodeProto, axis: int) -> int | None:
    """The axis of `node`'s data input that output `axis` comes from (None: an axis the op makes)."""
    data_rank, out_rank = t.rank(node.input[0]), t.rank(node.output[0])
    if data_rank is None or out_rank is None:
        return None
    if node.op_type == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), list(range(out_rank))[::-1])
        return perm[axis] if len(perm) == out_rank else None
    if node.op_type == "Unsqueeze":
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None and len(node.input) > 1:
            value = t.const(node.input[1])
            axes = None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]
        if axes is None:
            return None
        added = {a % out_rank for a in axes}
        return None if axis in added else axis - sum(1 for a in added if a < axis)
    gather_axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % data_rank
    indices_rank = t.rank(node.input[1])
    if indices_rank is None or t.layout(node.input[1]) is not None:
        return None
    if axis < gather_axis:
        return axis
    return None if axis < gather_axis + indices_rank else axis - indices_rank + 1


def _bind_filled(t: Tracer, node: onnx.NodeProto, axis: int, layout: Layout) -> bool:
    """ConstantOfShape: the shape element at `axis` follows the kept channels, the others stay."""
    if any(c.name in t.visited for c in t.consumers.get(node.output[0], [])):
        return False  # a node already read it as fixed
    elems = sv.value_of(t, node.input[0], (node.name, 0))
    new = layout.moved(axis)
    if elems is None or len(elems) <= axis or not sv.follows_channels(t, node, elems[axis], new,
                                                                          (node.output[0], axis)):
        return False
    if not all(sv.stays_fixed(t, e) for j, e in enumerate(elems) if j != axis):
        return False
    t.set(node.output[0], new)
    return True


def _bind_expanded(t: Tracer, node: onnx.NodeProto, axis: int, layout: Layout) -> bool:
    """Expand of untracked data of size 1 along `axis` to a literal channel count (a mask broadcast to every
    head): the literal follows the kept channels, the other shape elements stay. Data that holds the channels
    there (a position bias per head) is bound itself, the element being 1 or following them."""
    if t.layout(node.input[0]) is not None or any(c.name in t.visited for c in t.consumers.get(node.output[0], [])):
        return False
    elems = sv.value_of(t, node.input[1], (node.name, 1))
    data, out_rank = t.shape(node.input[0]), t.rank(node.output[0])
    if elems is None or data is None or out_rank is None:
        return False
    j, k = axis - (out_rank - len(elems)), axis - (out_rank - len(data))
    if j < 0:
        return False
    new = layout.moved(axis)
    if k >= 0 and data[k] != 1:  # the data holds the channels (a table's columns): the element keeps them
        keeps = elems[j].current == 1 or sv.follows_channels(t, node, elems[j], new, (node.output[0], axis))
        if data[k] != layout.size or not keeps or not bind(t, node.input[0], k, layout, node):
            return False
        if not all(sv.stays_fixed(t, e) for i, e in enumerate(elems) if i != j):
            return False
        t.set(node.output[0], new)
        return True
    if not sv.follows_channels(t, node, elems[j], new, (node.output[0], axis)):
        return False
    if not all(sv.stays_fixed(t, e) for i, e in enumerate(elems) if i != j):
        return False
    t.set(node.output[0], new)
    return True
