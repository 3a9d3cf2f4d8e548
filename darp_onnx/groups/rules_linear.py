"""Rules for the ops that create channels (sources) and consume them (sinks): Conv, Gemm, MatMul."""

from __future__ import annotations

import onnx

from darp_onnx.groups import const_views as cv
from darp_onnx.groups import rules_attention as attention
from darp_onnx.groups.model import ShapeEdit
from darp_onnx.groups.rules_basic import attr, unknown
from darp_onnx.groups.tracer import Layout, Tracer


def _bias(t: Tracer, node: onnx.NodeProto, pos: int, lay: Layout, axis: int = 0) -> None:
    if len(node.input) <= pos or not node.input[pos]:
        return
    name = node.input[pos]
    other = t.layout(name)
    if other is not None:
        t.couple(lay, other, node)
        return
    value = cv.view_value(t, name)
    if value is not None and value.ndim >= 1 and value.shape[axis] == lay.size and cv.bind(t, name, axis, lay, node):
        return
    if value is None or value.size > 1:
        t.freeze(lay.units, f"bias of node '{node.name}' is not a per-channel constant")


def _sink(t: Tracer, node: onnx.NodeProto, x: str, axis: int, weight: str, w_axis: int) -> None:
    """Input `x` is consumed on `axis`: the weight's input axis is sliced like x's layout. A filled
    input (ConstantOfShape: a zero initial state) gets channels of its own, coupled later."""
    lay = t.layout(x) or _filled_layout(t, node, x, axis)
    if lay is None:
        return
    if lay.axis != axis:
        t.freeze(lay.units, f"node '{node.name}' ({node.op_type}) reads channels on another axis")
        return
    t.bind_const(weight, w_axis, lay, node)


def _filled_layout(t: Tracer, node: onnx.NodeProto, x: str, axis: int) -> Layout | None:
    shape = t.shape(x)
    if shape is None or not isinstance(shape[axis], int) or shape[axis] < 2 or not cv.bindable(t, x):
        return None
    if t.const(x) is not None or cv.view_value(t, x) is not None:
        return None
    lay = Layout(axis, t.new_atom(shape[axis], f"{node.name} filled input ({shape[axis]})"))
    return lay if cv.bind(t, x, axis, lay, node) else None


def conv(t: Tracer, node: onnx.NodeProto) -> None:
    x, w = node.input[0], node.input[1]
    weight = t.const(w)
    if weight is None:
        unknown(t, node)
        return
    groups = int(attr(node, "group", 1))
    c_out, per_group = weight.shape[0], weight.shape[1]
    lay = t.layout(x)
    if groups == 1:
        _sink(t, node, x, 1, w, 1)
        out = t.source_layout(1, c_out, f"{node.name} out ({c_out})", node.name)
    elif per_group == 1 and groups == c_out and (lay is None or lay.size == groups):
        # depthwise: each output channel reads its own input channel, so channels pass through
        if lay is None or lay.axis != 1:
            if lay is not None:
                t.freeze(lay.units, f"depthwise node '{node.name}' reads channels on another axis")
            return
        out = lay
        t.depthwise.append(node.name)
        t.edit(ShapeEdit(node.name, -1, -1, (w, 0), 0, c_out, attr="group"))
    else:
        reason = f"grouped convolution '{node.name}' (group={groups}) is not pruned"
        if lay is not None:
            t.freeze(lay.units, reason)
        out = Layout(1, t.fresh_atom_frozen(c_out, f"{node.name} out ({c_out})", reason))
    t.bind_const(w, 0, out, node)
    _bias(t, node, 2, out)
    t.set(node.output[0], out)


def conv_transpose(t: Tracer, node: onnx.NodeProto) -> None:
    x, w = node.input[0], node.input[1]
    weight = t.const(w)
    if weight is not None and _depthwise_transpose(t, node, weight.shape):
        return
    if weight is None or int(attr(node, "group", 1)) != 1 or attr(node, "output_shape") is not None:
        unknown(t, node)
        if weight is not None:
            lay = t.layout(x)
            if lay is not None:
                t.freeze(lay.units, f"ConvTranspose '{node.name}' with groups/output_shape is not pruned")
        return
    _sink(t, node, x, 1, w, 0)
    c_out = weight.shape[1]
    out = t.source_layout(1, c_out, f"{node.name} out ({c_out})", node.name)
    t.bind_const(w, 1, out, node)
    _bias(t, node, 2, out)
    t.set(node.output[0], out)


def _depthwise_transpose(t: Tracer, node: onnx.NodeProto, w_shape: tuple[int, ...]) -> bool:
    """A depthwise ConvTranspose (weight [C, 1, k...], group C: a learned per-channel upsampling, as in
    CenterNet-style heads): channels pass through, as in a depthwise Conv. False where it is not one."""
    x, w = node.input[0], node.input[1]
    lay, groups = t.layout(x), int(attr(node, "group", 1))
    if (groups == 1 or len(w_shape) < 3 or w_shape[0] != groups or w_shape[1] != 1 or lay is None
            or lay.axis != 1 or lay.size != groups or attr(node, "output_shape") is not None):
        return False
    t.depthwise.append(node.name)
    t.edit(ShapeEdit(node.name, -1, -1, (w, 0), 0, groups, attr="group"))
    t.bind_const(w, 0, lay, node)
    _bias(t, node, 2, lay)
    t.set(node.output[0], lay)
    return True


def gemm(t: Tracer, node: onnx.NodeProto) -> None:
    a, b = node.input[0], node.input[1]
    weight = t.const(b)
    if weight is None or weight.ndim != 2:
        unknown(t, node)
        return
    trans_a, trans_b = int(attr(node, "transA", 0)), int(attr(node, "transB", 0))
    _sink(t, node, a, 0 if trans_a else 1, b, 1 if trans_b else 0)
    n = weight.shape[0 if trans_b else 1]
    out = Layout(1, *attention.source_units(t, node, n, f"{node.name} out ({n})"))
    t.bind_const(b, 0 if trans_b else 1, out, node)
    if len(node.input) > 2 and node.input[2] and t.layout(node.input[2]) is not None:
        _add_activation_c(t, node, out)
    elif len(node.input) > 2 and node.input[2]:
        c = cv.view_value(t, node.input[2])
        if c is not None and c.ndim >= 1 and c.shape[-1] == n and n > 1:
            if not cv.bind(t, node.input[2], c.ndim - 1, out, node):
                t.freeze(out.units, f"bias of Gemm '{node.name}' cannot be sliced")
        elif c is None or c.size > 1 and c.shape[-1] != 1:
            t.freeze(out.units, f"bias of Gemm '{node.name}' is not per-channel")
    t.set(node.output[0], out)


def _add_activation_c(t: Tracer, node: onnx.NodeProto, out: Layout) -> None:
    """Gemm's C computed at run time (tf2onnx fuses MatMul + Add of two activations into one Gemm: a GRU cell
    unrolled, h @ R + x @ W): added to the output, so its channels are the output's. Before, it was read as a
    bias that is not per-channel: the output froze, C's producer was pruned, and onnxruntime refused the
    written Gemm ('Invalid bias shape for broadcast')."""
    c = t.layout(node.input[2])
    rank = t.rank(node.input[2])
    if rank is None or c.axis != rank - 1:
        t.freeze(c.units, f"C of Gemm '{node.name}' is tracked on another axis than its output's channels")
        t.freeze(out.units, f"C of Gemm '{node.name}' is tracked on another axis than its output's channels")
        return
    t.couple(out, c.moved(1), node)


def matmul(t: Tracer, node: onnx.NodeProto) -> None:
    """MatMul with a 2-D constant right operand: a Linear layer on the last axis."""
    a, b = node.input
    weight = t.const(b)
    lay = t.layout(a)
    rank = t.rank(a)
    if weight is None or weight.ndim != 2 or t.const(a) is not None:
        attention.matmul_activations(t, node)
        return
    if rank is None:
        t.freeze_inputs(node, "MatMul with an input of unknown rank")
        return
    n = weight.shape[1]
    if lay is not None and lay.axis != rank - 1:
        if rank >= 2:
            t.set(node.output[0], lay)  # rows pass through a right-multiplication
        else:
            t.freeze(lay.units, f"MatMul '{node.name}' contracts a 1-D tracked tensor")
        return
    _sink(t, node, a, rank - 1, b, 0)
    out = Layout(rank - 1, *attention.source_units(t, node, n, f"{node.name} out ({n})"))
    t.bind_const(b, 1, out, node)
    t.set(node.output[0], out)
