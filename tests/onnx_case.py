"""Building one-node ONNX models and comparing the proxy with onnxruntime (CPU)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.proxy import build_proxy

# onnxruntime reads IR versions up to 10 or so; onnx's helper writes its newest one by default.
IR_VERSION = 10
RTOL, ATOL = 1e-4, 1e-5

_NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def one_node_model(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    input_order: Sequence[str] | None = None,
    outputs: Sequence[str] = ("y",),
    opset: int = 17,
    **attrs: Any,
) -> onnx.ModelProto:
    """A model with one node. `inputs` are graph inputs (fed at run time, shapes fully dynamic on
    axis 0 are not declared), `initializers` are constants; `input_order` lists the node's inputs
    (use '' for an omitted optional input), defaulting to graph inputs then initializers."""
    initializers = dict(initializers or {})
    names = list(input_order) if input_order is not None else [*inputs, *initializers]
    node = helper.make_node(op_type, names, list(outputs), name=f"{op_type.lower()}_node", **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, _NP_TO_ONNX[a.dtype], list(a.shape)) for n, a in inputs.items()
    ]
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs]
    inits = [numpy_helper.from_array(a, n) for n, a in initializers.items()]
    graph = helper.make_graph([node], "one_node", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(model)


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(feeds))


def run_proxy(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    proxy = build_proxy(model)
    with torch.no_grad():
        out = proxy.run({k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()})
    return [out[name].detach().numpy() for name in proxy.output_names]


def assert_matches_ort(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """The proxy's outputs equal onnxruntime's (values, shapes and dtype kind)."""
    expected = run_ort(model, feeds)
    actual = run_proxy(model, feeds)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
        assert a.shape == e.shape, f"output {i}: shape {a.shape} != onnxruntime {e.shape}"
        if e.dtype.kind in "fc":
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"output {i}")


def rand(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)
