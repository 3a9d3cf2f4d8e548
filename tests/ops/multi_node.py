"""Small multi-node ONNX graphs with symbolic dims, for shape-arithmetic tests at several batch sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_case import _NP_TO_ONNX, IR_VERSION


def graph_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, tuple[np.dtype | type, Sequence[int | str]]],
    outputs: Sequence[str] = ("y",),
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A model from nodes; `inputs` maps a graph input to (numpy dtype, shape), strings are symbolic."""
    graph_inputs = [
        helper.make_tensor_value_info(n, _NP_TO_ONNX[np.dtype(dt)], list(shape))
        for n, (dt, shape) in inputs.items()
    ]
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs]
    inits = [numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), "multi_node", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(model)
