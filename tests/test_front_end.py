"""Front ends the proxy has no converter for (a spectrogram STFT, scikit-learn's Scaler, a Loop with no
weights before it) run by onnxruntime inside the proxy; the network after them is pruned."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from darp_onnx import api, prune
from darp_onnx.errors import PreflightError
from darp_onnx.load.front_end import front_end_nodes, has_converter_in
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from tests.onnx_case import IR_VERSION


def _w(rng, name, *shape, scale=0.3):
    return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def scaled_mlp() -> onnx.ModelProto:
    """scikit-learn's MLPRegressor as skl2onnx writes it: Scaler (ai.onnx.ml), then MatMul/Add/Relu layers."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Scaler", ["x"], ["xs"], domain="ai.onnx.ml", offset=[0.5] * 6, scale=[2.0] * 6),
             helper.make_node("MatMul", ["xs", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"]), helper.make_node("Add", ["h2", "b2"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "w3"], ["y"])]
    inits = [_w(rng, "w1", 6, 32), _w(rng, "b1", 32), _w(rng, "w2", 32, 32), _w(rng, "b2", 32), _w(rng, "w3", 32, 1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], inits,
                  opsets=(("", 17), ("ai.onnx.ml", 3)))


def spectrogram_cnn() -> onnx.ModelProto:
    """A waveform classifier that computes its power spectrogram in the graph (HannWindow, STFT, opset 17)."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Constant", [], ["win_len"], value=numpy_helper.from_array(np.array(64, np.int64))),
             helper.make_node("HannWindow", ["win_len"], ["window"]),
             helper.make_node("Unsqueeze", ["wave", "last"], ["wave3"]),
             helper.make_node("STFT", ["wave3", "step", "window"], ["spec"], onesided=1),
             helper.make_node("Mul", ["spec", "spec"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "last"], ["power"], keepdims=0),
             helper.make_node("Unsqueeze", ["power", "one"], ["img"]),
             helper.make_node("Conv", ["img", "c1", "cb1"], ["f1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f1"], ["g1"]),
             helper.make_node("Conv", ["g1", "c2", "cb2"], ["f2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f2"], ["g2"]),
             helper.make_node("GlobalAveragePool", ["g2"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1)]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array(32, np.int64), "step"),
             _w(rng, "c1", 16, 1, 3, 3, scale=0.1), _w(rng, "cb1", 16), _w(rng, "c2", 32, 16, 3, 3, scale=0.1),
             _w(rng, "cb2", 32), _w(rng, "fc", 5, 32), _w(rng, "fcb", 5)]
    return _model(nodes, [helper.make_tensor_value_info("wave", TensorProto.FLOAT, ["n", 1024])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 5])], inits)


def test_front_ends_are_the_unconverted_nodes_before_any_weights():
    model = spectrogram_cnn()
    assert front_end_nodes(model, has_converter_in(model)) == {"window", "spec"}
    after = scaled_mlp()  # the Scaler moved behind the first MatMul: no longer a front end
    after.graph.node[0].input[0], after.graph.node[1].input[0] = "r2", "x"
    after.graph.node[1].output[0] = "h1"
    nodes = list(after.graph.node)
    del after.graph.node[:]
    after.graph.node.extend([*nodes[1:7], nodes[0]])
    assert front_end_nodes(after, has_converter_in(after)) == set()


@pytest.mark.parametrize("make, feeds", [
    (scaled_mlp, lambda r: {"x": r.standard_normal((3, 6)).astype(np.float32)}),
    (spectrogram_cnn, lambda r: {"wave": r.standard_normal((3, 1024)).astype(np.float32)}),
])
def test_the_proxy_runs_a_front_end_with_onnxruntime_and_matches_it(make, feeds, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(make(), path)
    model = load_model(path)
    proxy = build_proxy(model, front_ends=True)
    x = feeds(np.random.default_rng(2))
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    with torch.no_grad():
        actual = proxy.run({k: torch.from_numpy(v) for k, v in x.items()})[proxy.output_names[0]].numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    loss = proxy.run({k: torch.from_numpy(v) for k, v in x.items()})[proxy.output_names[0]].square().mean()
    loss.backward()  # the layers after the front end train
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in proxy.weights.values())


@pytest.mark.parametrize("make, kept_op", [(scaled_mlp, "Scaler"), (spectrogram_cnn, "STFT")])
def test_prune_writes_the_network_after_a_front_end(make, kept_op, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(make(), path)
    out = tmp_path / "m.pruned.onnx"
    result = prune(path, output=out, target_flops=0.5, search_steps=4, finetune_steps=2, batch_size=4,
                   synthetic_samples=8, latency_runs=2, max_drift="off")
    written = onnx.load(out)
    assert kept_op in {n.op_type for n in written.graph.node}
    assert result.flops_after < result.flops_before
    assert api.validate(path, out)["passed"]
    report = api.inspect(path)  # as prune decides: analysed, not "its proxy cannot convert"
    assert report["analysed"] and report["prunable_groups"] > 0


def test_an_unconverted_op_after_weights_is_still_refused(tmp_path):
    model = scaled_mlp()
    model.graph.node[6].op_type = "Shrink"  # converted: fine; make it an op without a converter
    model.graph.node[6].op_type, model.graph.node[6].domain = "Scaler", "ai.onnx.ml"
    model.graph.node[6].attribute.extend([helper.make_attribute("scale", [1.0] * 32)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(PreflightError, match="ai.onnx.ml::Scaler.*a layer with weights, MatMul node"):
        prune(path, output=tmp_path / "out.onnx", target_flops=0.5)
