"""Graphs darp-onnx refuses up front, with one line that says why and what to do instead."""

from __future__ import annotations

from collections import Counter

import onnx

from darp_onnx.errors import UnsupportedOpError

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
                 "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "DynamicQuantizeMatMul",
                 "MatMulIntegerToFloat", "MatMulNBits"}
CONTROL_FLOW_OPS = {"If", "Loop", "Scan"}


CONTROL_FLOW_ADVICE = {
    "If": "re-export the model without it (e.g. trace the branch your inputs take)",
    "Loop": "re-export it without (a Keras recurrent layer that tf2onnx wrote as a Loop: as an ONNX LSTM/GRU op, "
            "or unrolled at a fixed length), or, where the loop is a front end with no weights before it (a tf.map_fn "
            "computing spectrograms), prune the part after it (onnx.utils.extract_model from the loop's outputs)",
}


def refuse_unprunable(model: onnx.ModelProto, source: str = "the model") -> None:
    """Raise UnsupportedOpError for a quantized graph, one with control flow (other than in a front end with no
    weights before it, which onnxruntime runs), or one that takes strings."""
    from darp_onnx.load.front_end import front_end_nodes, has_converter_in
    from darp_onnx.load.stored_weights import dequantizes_a_constant

    _refuse_strings(model, source)
    front = front_end_nodes(model, has_converter_in(model))  # run as written by onnxruntime (load.front_end)
    initializers = {t.name for t in model.graph.initializer} - {i.name for i in model.graph.input}
    for node in model.graph.node:
        where = f"{source}: node '{node.name or '#' + node.output[0]}' ({node.op_type})"
        if node.op_type in QUANTIZED_OPS and not dequantizes_a_constant(node, initializers):
            raise UnsupportedOpError(
                f"{where}: this is a quantized graph; darp-onnx prunes float models: prune the float model, "
                "then quantize the pruned one")
        in_front = bool(node.output) and node.output[0] in front
        if node.op_type in CONTROL_FLOW_OPS and node.domain in ("", "ai.onnx") and not in_front:
            raise UnsupportedOpError(
                f"{where}: control flow (a sub-graph run at run time{_body_ops(node)}) cannot be pruned; "
                f"{CONTROL_FLOW_ADVICE.get(node.op_type, CONTROL_FLOW_ADVICE['Loop'])}")


def _body_ops(node: onnx.NodeProto) -> str:
    """'; its body runs Conv x3, MatMul, ...' (the most frequent ops of its sub-graphs), so a user can tell
    a recurrent layer from a front end."""
    ops = Counter(n.op_type for attr in node.attribute if attr.type == onnx.AttributeProto.GRAPH
                  for n in attr.g.node if n.op_type not in ("Constant", "Identity"))
    if not ops:
        return ""
    listed = ", ".join(op if count == 1 else f"{op} x{count}" for op, count in ops.most_common(6))
    return f"; its body runs {listed}"


def _refuse_strings(model: onnx.ModelProto, source: str) -> None:
    """A string input cannot reach the torch proxy (a phoneme model's 'phs' was reported as a tensor of
    unknown shape after every --input-shape was given)."""
    for value in model.graph.input:
        if value.type.tensor_type.elem_type == onnx.TensorProto.STRING:
            raise UnsupportedOpError(
                f"{source}: input '{value.name}' takes strings, which darp-onnx cannot train on; prune the part "
                "after the string lookup (onnx.utils.extract_model from the first numeric tensors)")
