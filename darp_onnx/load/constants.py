"""Tensors known before run time: initializers and the values of Constant nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from darp_onnx.errors import BadInputError


@dataclass(frozen=True)
class TensorSource:
    """Where a constant tensor lives in the ONNX model, so trained values can be written back."""

    kind: str  # "initializer" or "constant_node"
    name: str  # the tensor's ONNX name
    onnx_dtype: int
    node_name: str = ""  # for Constant nodes


def constant_node_value(node: onnx.NodeProto, source: str) -> tuple[np.ndarray, int]:
    """Value and ONNX element type of a Constant node, whichever attribute form it uses."""
    attr = node.attribute[0] if len(node.attribute) == 1 else None
    if attr is None:
        raise BadInputError(f"{source}: Constant node '{node.name}' must have exactly one value attribute")
    if attr.name == "value":
        return numpy_helper.to_array(attr.t), int(attr.t.data_type)
    if attr.name == "value_float":
        return np.array(attr.f, dtype=np.float32), onnx.TensorProto.FLOAT
    if attr.name == "value_floats":
        return np.array(list(attr.floats), dtype=np.float32), onnx.TensorProto.FLOAT
    if attr.name == "value_int":
        return np.array(attr.i, dtype=np.int64), onnx.TensorProto.INT64
    if attr.name == "value_ints":
        return np.array(list(attr.ints), dtype=np.int64), onnx.TensorProto.INT64
    raise BadInputError(
        f"{source}: Constant node '{node.name}' uses attribute '{attr.name}', which darp-onnx does not "
        "read (use value, value_float(s) or value_int(s))"
    )


def collect_constants(model: onnx.ModelProto, source: str) -> tuple[dict[str, np.ndarray], dict[str, TensorSource]]:
    """Values and origins of all initializers and Constant-node outputs of the main graph."""
    values: dict[str, np.ndarray] = {}
    origins: dict[str, TensorSource] = {}
    for init in model.graph.initializer:
        values[init.name] = numpy_helper.to_array(init)
        origins[init.name] = TensorSource("initializer", init.name, int(init.data_type))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value, dtype = constant_node_value(node, source)
            values[node.output[0]] = value
            origins[node.output[0]] = TensorSource("constant_node", node.output[0], dtype, node.name)
    return values, origins
