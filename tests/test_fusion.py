"""Fused patterns compute what the nodes they replace compute, and only fuse when that is safe."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.proxy import build_proxy
from tests.onnx_case import IR_VERSION, assert_matches_ort, rand


def _gelu_mlp(extra_reader: bool = False, half_first: bool = True) -> onnx.ModelProto:
    inits = {
        "w": rand(8, 16, seed=1), "b": rand(16, seed=2),
        "sqrt2": np.array(math.sqrt(2.0), np.float32), "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc_mm"),
        helper.make_node("Add", ["mm", "b"], ["h"], name="fc_bias"),
        helper.make_node("Div", ["h", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add1"),
        helper.make_node("Mul", ["half", "a"] if half_first else ["a", "half"], ["m"], name="half"),
        helper.make_node("Mul", ["h", "m"], ["y"], name="gelu"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 8])],
                              outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("half_first", [True, False])
def test_gelu_and_linear_bias_are_fused_and_exact(half_first):
    model = _gelu_mlp(half_first=half_first)
    proxy = build_proxy(model)
    assert [s.op_type for s in proxy.steps] == ["MatMul", "Gelu"]
    assert proxy.steps[0].inputs == ("x", "w", "b")
    assert_matches_ort(model, {"x": rand(3, 5, 8, seed=4)})


def test_no_fusion_when_an_intermediate_is_read_elsewhere():
    model = _gelu_mlp(extra_reader=True)
    proxy = build_proxy(model)
    assert "Gelu" not in [s.op_type for s in proxy.steps]
    assert_matches_ort(model, {"x": rand(2, 5, 8, seed=5)})


def test_fused_linear_weights_still_train_and_write_back():
    model = _gelu_mlp()
    proxy = build_proxy(model)
    proxy(**{"x": __import__("torch").from_numpy(rand(2, 5, 8))}).sum().backward()
    assert all(p.grad is not None for p in proxy.parameters())
    names = {src.name for key, src in proxy.param_sources.items() if key in proxy.weights}
    assert names == {"w", "b"}
