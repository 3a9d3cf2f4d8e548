"""Element types and weight names the ONNX node suite found crashes with: bfloat16 weights, float8 casts,
types torch cannot compute with (refused by name), initializer names that are container methods."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from darp_onnx.errors import BadInputError, UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import IR_VERSION, assert_matches_ort, one_node_model, rand, run_ort, run_proxy


def _model(nodes, inputs, outputs, initializers=(), opset=19) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def _bf16_weight_model(name: str = "w") -> onnx.ModelProto:
    weight = rand(3, 4, seed=3).astype(ml_dtypes.bfloat16)
    init = numpy_helper.from_array(weight, name)
    nodes = [helper.make_node("Cast", [name], ["w32"], to=T.FLOAT), helper.make_node("MatMul", ["x", "w32"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", T.FLOAT, [2, 4])], [init])


def test_bfloat16_weight_loads_and_matches_onnxruntime():
    model = _bf16_weight_model()
    assert_matches_ort(model, {"x": rand(2, 3)})


def test_bfloat16_weight_is_written_back_as_bfloat16():
    proxy = build_proxy(_bf16_weight_model())
    with torch.no_grad():
        proxy.tensor("w").mul_(2)
    written = numpy_helper.to_array(proxy.to_onnx().graph.initializer[0])
    original = rand(3, 4, seed=3).astype(ml_dtypes.bfloat16).astype(np.float32)
    assert written.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(written.astype(np.float32), original * 2)


@pytest.mark.parametrize("name", ["values", "keys", "items", "to", "update", "parameters", "0weight"])
def test_initializer_named_like_a_container_method(name):
    w = rand(2, 3, seed=4)
    model = one_node_model("Add", {"x": rand(2, 3)}, initializers={name: w})
    assert_matches_ort(model, {"x": rand(2, 3)})
    proxy = build_proxy(model)
    assert proxy.parameter_key(name) is not None
    written = {i.name: numpy_helper.to_array(i) for i in proxy.to_onnx().graph.initializer}
    np.testing.assert_array_equal(written[name], w)


@pytest.mark.parametrize("elem_type", [T.UINT16, T.UINT32, T.UINT64])
def test_input_types_torch_cannot_compute_are_refused_by_name(elem_type):
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [helper.make_tensor_value_info("x", elem_type, [2])],
                   [helper.make_tensor_value_info("y", elem_type, [2])])
    with pytest.raises(UnsupportedOpError, match=f"graph input 'x' has element type {T.DataType.Name(elem_type)}"):
        build_proxy(model)


def test_uint32_initializer_is_refused_by_name():
    init = numpy_helper.from_array(np.arange(3, dtype=np.uint32), "c")
    model = _model([helper.make_node("Add", ["x", "c"], ["y"])], [helper.make_tensor_value_info("x", T.UINT32, [3])],
                   [helper.make_tensor_value_info("y", T.UINT32, [3])], [init])
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info("x", T.UINT8, [3]))
    with pytest.raises(UnsupportedOpError, match="constant tensor 'c' has element type UINT32"):
        build_proxy(model)


def test_sequence_input_is_refused():
    seq = helper.make_tensor_sequence_value_info("s", T.FLOAT, None)
    model = _model([helper.make_node("Identity", ["s"], ["y"])], [seq], [seq], opset=16)
    model.graph.output[0].name = "y"
    with pytest.raises(UnsupportedOpError, match="not a tensor"):
        build_proxy(model)


def test_string_input_is_refused():
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [helper.make_tensor_value_info("x", T.STRING, [2])],
                   [helper.make_tensor_value_info("y", T.STRING, [2])])
    with pytest.raises(BadInputError, match="string"):
        build_proxy(model)


EDGES = np.array([0.0, -0.3, 1e-3, 3.1, 200.0, 239.0, 247.0, 249.0, 300.0, 447.0, 460.0, 470.0, 500.0, 6e4, 7e4,
                  -7e4, np.inf, -np.inf, np.nan], dtype=np.float32)
FLOAT8 = [T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ]


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("to", FLOAT8, ids=[T.DataType.Name(t) for t in FLOAT8])
def test_cast_to_float8_matches_onnxruntime(to, saturate):
    """Round trip float -> float8 -> float: rounding, saturation, overflow to inf or NaN."""
    nodes = [helper.make_node("Cast", ["x"], ["q"], to=to, saturate=saturate),
             helper.make_node("Cast", ["q"], ["y"], to=T.FLOAT)]
    model = _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, [EDGES.size])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [EDGES.size])])
    x = np.concatenate([EDGES, -EDGES])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = x.size
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = x.size
    expected, actual = run_ort(model, {"x": x})[0], run_proxy(model, {"x": x})[0]
    np.testing.assert_array_equal(actual, expected)


def test_float8_input_is_read_exactly():
    x = np.array([0.5, -3.0, 448.0, 0.0078125], dtype=ml_dtypes.float8_e4m3fn)
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT)],
                   [helper.make_tensor_value_info("x", T.FLOAT8E4M3FN, [4])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [4])])
    y = build_proxy(model).run({"x": x})["y"]
    np.testing.assert_array_equal(y.numpy(), x.astype(np.float32))


def test_cast_like_to_an_intermediate_of_unrecorded_type():
    """The target's type is known only at run time (no value_info): the run-time dtype is used."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("CastLike", ["x", "s"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", T.INT64, [2, 3])])
    x = np.array([[1.7, -2.5, 3.2], [0.0, 9.9, -0.4]], np.float32)
    assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("elem_type,values", [(T.INT4, [-8, -1, 0, 7]), (T.UINT4, [0, 3, 9, 15]),
                                              (T.INT2, [-2, -1, 0, 1]), (T.UINT2, [0, 1, 2, 3])])
def test_narrow_integer_input_is_read_exactly(elem_type, values):
    x = np.array(values, dtype=helper.tensor_dtype_to_np_dtype(elem_type))
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT)],
                   [helper.make_tensor_value_info("x", elem_type, [4])],
                   [helper.make_tensor_value_info("y", T.FLOAT, [4])], opset=25)
    y = build_proxy(model).run({"x": x})["y"]
    np.testing.assert_array_equal(y.numpy(), np.array(values, np.float32))


@pytest.mark.parametrize("to", [T.INT4, T.UINT2, T.FLOAT4E2M1, T.FLOAT8E8M0])
def test_cast_to_a_type_torch_cannot_round_to_is_refused(to):
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=to)], [helper.make_tensor_value_info("x", T.FLOAT, [4])],
                   [helper.make_tensor_value_info("y", to, [4])], opset=25)
    with pytest.raises(UnsupportedOpError, match=f"casting to {T.DataType.Name(to)}"):
        build_proxy(model)
