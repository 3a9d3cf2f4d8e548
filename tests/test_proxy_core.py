"""The proxy machinery: registry, parameters, dtypes, write-back and errors (with simple ops)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy, registered_keys
from darp_onnx.proxy.registry import add_converter, get_converter, resolve_since_version
from tests.onnx_case import IR_VERSION, assert_matches_ort, rand, run_ort


def _affine_model(dtype=TensorProto.FLOAT, weights_in_constants: bool = False) -> onnx.ModelProto:
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    w = numpy_helper.from_array(rand(4, seed=3).astype(np_dtype), "w")
    b = numpy_helper.from_array(rand(4, seed=4).astype(np_dtype), "b")
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["xw"], name="scale"),
        helper.make_node("Add", ["xw", "b"], ["h"], name="shift"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    inits = [w, b]
    if weights_in_constants:
        nodes = [helper.make_node("Constant", [], ["w"], name="w_const", value=w),
                 helper.make_node("Constant", [], ["b"], name="b_const", value=b), *nodes]
        inits = []
    graph = helper.make_graph(
        nodes,
        "affine",
        [helper.make_tensor_value_info("x", dtype, ["N", 4])],
        [helper.make_tensor_value_info("y", dtype, ["N", 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def test_registering_a_key_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        add_converter("Relu", versions=[14])(lambda node, ctx: None)


def test_opset_resolves_to_since_version():
    assert resolve_since_version("Relu", 17) == 14
    assert resolve_since_version("Relu", 13) == 13
    assert get_converter("Relu", 17) is not None
    assert all(key.since_version >= 1 for key in registered_keys())


@pytest.mark.parametrize("batch", [1, 5])
def test_matches_onnxruntime_at_two_batch_sizes(batch):
    assert_matches_ort(_affine_model(), {"x": rand(batch, 4, seed=batch)})


@pytest.mark.parametrize("in_constants", [False, True], ids=["initializers", "constant_nodes"])
def test_float_weights_are_parameters_with_gradients(in_constants):
    proxy = build_proxy(_affine_model(weights_in_constants=in_constants))
    sources = {proxy.param_sources[k].name for k, _ in proxy.weights.items()}
    assert sources == {"w", "b"}
    proxy(torch.from_numpy(rand(3, 4))).sum().backward()
    for name, param in proxy.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("in_constants", [False, True], ids=["initializers", "constant_nodes"])
def test_round_trip_changed_weights(in_constants):
    model = _affine_model(weights_in_constants=in_constants)
    original = model.SerializeToString()
    proxy = build_proxy(model)
    with torch.no_grad():
        for param in proxy.parameters():
            param.mul_(-2.0).add_(0.25)
    written = proxy.to_onnx()
    assert model.SerializeToString() == original, "the source model must not change"
    x = rand(6, 4, seed=9)
    expected = proxy(torch.from_numpy(x)).detach().numpy()
    (actual,) = run_ort(written, {"x": x})
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(actual, run_ort(model, {"x": x})[0])


def test_float16_model_computes_in_float32_and_writes_float16():
    model = _affine_model(TensorProto.FLOAT16)
    proxy = build_proxy(model)
    assert all(p.dtype == torch.float32 for p in proxy.parameters())
    x = rand(3, 4, seed=1).astype(np.float16)
    (expected,) = run_ort(model, {"x": x})
    actual = proxy(torch.from_numpy(x)).detach().numpy()
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected.astype(np.float32), rtol=2e-3, atol=2e-3)
    written = proxy.to_onnx()
    assert {t.data_type for t in written.graph.initializer} == {TensorProto.FLOAT16}


def test_unsupported_op_names_node_op_and_opset():
    node = helper.make_node("Hardmax", ["x"], ["y"], name="odd_one")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    with pytest.raises(UnsupportedOpError, match=r"node 'odd_one' uses op Hardmax \(opset 17\).*supported ops: .*Relu"):
        build_proxy(model, source="m.onnx")


def test_custom_domain_op_is_named():
    node = helper.make_node("FusedThing", ["x"], ["y"], name="fused", domain="com.example")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError, match="com.example::FusedThing"):
        build_proxy(model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_proxy_runs_on_cuda():
    proxy = build_proxy(_affine_model())
    x = torch.from_numpy(rand(4, 4))
    expected = proxy(x)
    actual = proxy.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
