"""Control flow and odd inputs from the real-model corpus (silero-vad exports): an `If` decided by the input
shapes is replaced by its branch, one that reads input values is refused in one line; a scalar input and a
state input whose first axis is not the batch run as whole feeds."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import darp_onnx
from darp_onnx.errors import UnsupportedOpError
from darp_onnx.load.control_flow import data_inputs_of, inline_static_ifs, refuse_data_dependent
from tests.groups.builder import GraphBuilder


def _branch(name: str, op: str, x: str, out: str) -> onnx.GraphProto:
    node = helper.make_node(op, [x], [out], name=f"{name}_{op}")
    return helper.make_graph([node], name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])


def if_model(*, on_shape: bool = True) -> onnx.ModelProto:
    """conv -> If(width == 8: Relu, else Neg) -> conv; the condition reads the conv's shape, or (on_shape
    False) the value of an int64 input `sr`."""
    b = GraphBuilder(21, opset=17)
    h = b.conv(b.input("x", ["n", 3, 8, 8]), 3, 8)
    if on_shape:
        width = b.op("Gather", b.op("Shape", h), b.const(np.array(3, dtype=np.int64)))
        cond = b.op("Equal", width, b.const(np.array(8, dtype=np.int64)))
    else:
        b.inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
        cond = b.op("Equal", "sr", b.const(np.array(16000, dtype=np.int64)))
    b.nodes.append(helper.make_node("If", [cond], ["picked"], name="the_if",
                                    then_branch=_branch("then", "Relu", h, "then_out"),
                                    else_branch=_branch("else", "Neg", h, "else_out")))
    return b.build(b.conv("picked", 8, 4))


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_shape_decided_if_is_replaced_by_its_branch():
    model = if_model()
    assert data_inputs_of(model.graph.node[-2].input[0], model.graph) == set()
    inlined = inline_static_ifs(model, {"x": (1, 3, 8, 8)})
    assert inlined.taken == {"the_if": "then_branch"}
    assert not any(n.op_type == "If" for n in inlined.model.graph.node)
    assert any(n.op_type == "If" for n in model.graph.node)  # the input model is untouched
    onnx.checker.check_model(inlined.model, full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(inlined.model, {"x": x}), _run(model, {"x": x}), rtol=1e-5, atol=1e-5)
    assert "then" in inlined.describe()


def test_if_on_input_values_is_refused_in_one_line():
    model = if_model(on_shape=False)
    inlined = inline_static_ifs(model, {"x": (1, 3, 8, 8)})
    assert not inlined.taken
    with pytest.raises(UnsupportedOpError, match=r"node 'the_if' \(If\): its condition reads the values of "
                                                 r"input\(s\) sr") as info:
        refuse_data_dependent(inlined.model, "m.onnx")
    assert "\n" not in str(info.value)


def test_prune_takes_the_branch_and_prunes(tmp_path):
    result = darp_onnx.prune(if_model(), output=tmp_path / "p.onnx", target_flops=0.6,
                             input_shapes={"x": (1, 3, 8, 8)}, search_steps=3, finetune_steps=1, batch_size=4,
                             synthetic_samples=8, latency_runs=1, channel_multiple=1)
    assert result.flops_after < result.flops_before
    written = onnx.load(str(tmp_path / "p.onnx"))
    assert not any(n.op_type == "If" for n in written.graph.node)


def test_inspect_takes_the_branch_as_prune_does(tmp_path):
    """inspect said an SVTRv2 could not be analysed ('If' not convertible) that prune inlined and pruned."""
    path = tmp_path / "if.onnx"
    onnx.save(if_model(), path)
    report = darp_onnx.inspect(path)
    assert report["analysed"] and "If" not in report["unsupported_ops"] and report["prunable_groups"] > 0
    assert "then" in report["control_flow"]
    onnx.save(if_model(on_shape=False), path)
    assert darp_onnx.inspect(path)["unsupported_ops"] == ["If"]  # decided by an input's value: stays


def recurrent_state_model(with_scalar: bool) -> onnx.ModelProto:
    """silero-vad (spox export) in small: a fixed-batch input, a state [2, 1, C] whose first axis indexes h and
    c (not samples) and a scalar int64 input, as the sample-rate input of the VAD models."""
    b = GraphBuilder(22, opset=17)
    h = b.conv(b.cbr(b.input("x", [1, 3, 6, 6]), 3, 8), 8, 4)  # the 8 channels are prunable
    b.inputs.append(helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 4]))
    second = b.op("Gather", "state", b.const(np.array(1, dtype=np.int64)), axis=0)  # [1, 4]: index 1 of axis 0
    bias = b.op("Unsqueeze", second, b.const(np.array([2, 3], dtype=np.int64)))  # [1, 4, 1, 1]
    out = b.op("Add", h, bias)
    if with_scalar:
        b.inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
        out = b.op("Mul", out, b.op("Cast", "sr", to=TensorProto.FLOAT))
    return b.build(b.conv(out, 4, 2))


@pytest.mark.parametrize("with_scalar", [False, True])
def test_state_and_scalar_inputs_run_as_whole_feeds(tmp_path, with_scalar):
    model = recurrent_state_model(with_scalar)
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.7,
                             input_shapes={"x": (1, 3, 6, 6), "state": (2, 1, 4)}, search_steps=3,
                             finetune_steps=1, batch_size=2, synthetic_samples=4, latency_runs=1, channel_multiple=1)
    assert result.flops_after < result.flops_before
