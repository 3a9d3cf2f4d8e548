"""Graphs darp-onnx refuses up front, with one line that says why and what to do instead."""

from __future__ import annotations

import onnx

from darp_onnx.errors import UnsupportedOpError

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
                 "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "DynamicQuantizeMatMul",
                 "MatMulIntegerToFloat", "MatMulNBits"}
CONTROL_FLOW_OPS = {"If", "Loop", "Scan"}


def refuse_unprunable(model: onnx.ModelProto, source: str = "the model") -> None:
    """Raise UnsupportedOpError for a quantized graph or one with control flow."""
    for node in model.graph.node:
        where = f"{source}: node '{node.name or '#' + node.output[0]}' ({node.op_type})"
        if node.op_type in QUANTIZED_OPS:
            raise UnsupportedOpError(
                f"{where}: this is a quantized graph; darp-onnx prunes float models: prune the float model, "
                "then quantize the pruned one")
        if node.op_type in CONTROL_FLOW_OPS and node.domain in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"{where}: control flow (a sub-graph run at run time) cannot be pruned; re-export the model "
                "without it (e.g. trace the branch your inputs take)")
