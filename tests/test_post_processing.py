"""Post-processing the proxy cannot run (NonMaxSuppression and what reads its indices): split off at load,
written back unchanged after the pruned network, checked whole."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from darp_onnx import api, prune
from darp_onnx.errors import PreflightError, ValidationFailedError
from darp_onnx.load.post_processing import attach_post_processing, split_post_processing
from darp_onnx.load.preflight import convertible_in
from darp_onnx.validation.post_processing import check_whole
from tests.onnx_case import IR_VERSION


def _init(rng, name, *shape):
    return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)


def detector(*, threshold_input: bool = False, conv_after_nms: bool = False, shape_read: bool = False
             ) -> onnx.ModelProto:
    """Two convolutions, a box head and a score head, NonMaxSuppression, a Gather of the kept boxes."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "wb", "bb"], ["box4"]),
        helper.make_node("Conv", ["r2", "ws", "bs"], ["sc"]),
        helper.make_node("Reshape", ["box4", "shb"], ["boxr"]),
        helper.make_node("Transpose", ["boxr"], ["boxes"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["sc", "shs"], ["scr"]),
        helper.make_node("Sigmoid", ["scr"], ["scores"]),
        helper.make_node("Constant", [], ["iou"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou",
                                               "threshold" if threshold_input else "fixed_threshold"], ["selected"]),
        helper.make_node("Gather", ["selected", "two"], ["box_index"], axis=1),
        helper.make_node("Gather", ["boxes", "box_index"], ["picked"], axis=1),
    ]
    inits = [_init(rng, "w1", 8, 3, 3, 3), _init(rng, "b1", 8), _init(rng, "w2", 16, 8, 3, 3), _init(rng, "b2", 16),
             _init(rng, "wb", 4, 16, 1, 1), _init(rng, "bb", 4), _init(rng, "ws", 2, 16, 1, 1), _init(rng, "bs", 2),
             numpy_helper.from_array(np.array([1, 4, -1], np.int64), "shb"),
             numpy_helper.from_array(np.array([1, 2, -1], np.int64), "shs"),
             numpy_helper.from_array(np.array([20], np.int64), "max_out"),
             numpy_helper.from_array(np.array(2, np.int64), "two"),
             numpy_helper.from_array(np.array([0.4], np.float32), "fixed_threshold")]
    outputs = [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, "kept", 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 256])]
    if conv_after_nms:  # a layer with weights after the NMS: no split
        nodes[-1] = helper.make_node("Gather", ["r2", "box_index"], ["picked_map"], axis=2)
        nodes.append(helper.make_node("Conv", ["picked_map", "wz", "bz"], ["picked"]))
        inits += [_init(rng, "wz", 4, 16, 1, 1), _init(rng, "bz", 4)]
        outputs[0] = helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, 4, "kept", 16])
    if shape_read:  # the post-processing reads a feature map's shape: the Shape goes with it, the cut stays on r2
        nodes += [helper.make_node("Shape", ["r2"], ["r2_shape"]),
                  helper.make_node("Cast", ["r2_shape"], ["r2_size"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMax", ["r2_size"], ["r2_size_one"], keepdims=1),
                  helper.make_node("Mul", ["picked", "r2_size_one"], ["picked_scaled"])]
        outputs.append(helper.make_tensor_value_info("picked_scaled", TensorProto.FLOAT, [1, "kept", 4]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])]
    if threshold_input:
        inputs.append(helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "detector", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _feeds(model, seed=1):
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.random((1, 3, 16, 16)).astype(np.float32)}
    if any(i.name == "threshold" for i in model.graph.input):
        feeds["threshold"] = np.array([0.4], np.float32)
    return feeds


def _run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_split_keeps_the_network_and_cuts_at_the_tensors_the_tail_reads():
    model = detector()
    network, post, why = split_post_processing(model, convertible_in(model))
    assert why is None and post is not None
    assert [n.op_type for n in post.nodes] == ["Constant", "NonMaxSuppression", "Gather", "Gather"]
    assert post.cut == ("boxes",)  # 'scores' is an output of the model already
    assert [o.name for o in network.graph.output] == ["scores", "boxes"]
    assert "NonMaxSuppression" not in {n.op_type for n in network.graph.node}
    onnx.checker.check_model(network, full_check=True)
    whole = attach_post_processing(network, post)
    onnx.checker.check_model(whole, full_check=True)
    for a, b in zip(_run(whole, _feeds(model)), _run(model, _feeds(model)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_layer_with_weights_after_the_op_means_no_split_and_says_which():
    model = detector(conv_after_nms=True)
    network, post, why = split_post_processing(model, convertible_in(model))
    assert post is None and network is model
    assert "Conv node" in why and "comes after it" in why


def test_shape_arithmetic_goes_with_the_tail_so_the_cut_stays_on_features():
    model = detector(shape_read=True)
    network, post, _ = split_post_processing(model, convertible_in(model))
    assert {"Shape", "Cast", "ReduceMax"} <= {n.op_type for n in post.nodes}
    assert set(post.cut) == {"boxes", "r2"}
    assert all(network.graph.output[i].type.tensor_type.elem_type == TensorProto.FLOAT
               for i in range(len(network.graph.output)))


def test_an_input_only_the_tail_reads_leaves_the_network_and_comes_back():
    model = detector(threshold_input=True)
    network, post, _ = split_post_processing(model, convertible_in(model))
    assert [i.name for i in network.graph.input] == ["x"] and post.network_inputs == ("x",)
    whole = attach_post_processing(network, post)
    assert [i.name for i in whole.graph.input] == ["x", "threshold"]


def test_prune_writes_the_pruned_network_with_the_post_processing_back(tmp_path):
    model = detector(threshold_input=True)
    path = tmp_path / "det.onnx"
    onnx.save(model, path)
    before = path.read_bytes()
    out = tmp_path / "det.pruned.onnx"
    notes = []

    def progress(stage, info):
        notes.append(info.get("message", ""))

    result = prune(path, output=out, target_flops=0.5, search_steps=4, finetune_steps=2, batch_size=4,
                   synthetic_samples=8, latency_runs=2, max_drift="off", progress=progress)
    assert path.read_bytes() == before
    written = onnx.load(out)
    assert [o.name for o in written.graph.output] == ["picked", "scores"]
    assert [i.name for i in written.graph.input] == ["x", "threshold"]
    assert [n.op_type for n in written.graph.node if n.op_type == "NonMaxSuppression"] == ["NonMaxSuppression"]
    assert result.flops_after < result.flops_before
    assert any("post-processing written back" in c for c in result.validation.checks)
    assert any("post-processing kept as it is" in n for n in notes)
    picked, scores = _run(written, _feeds(model))
    assert picked.ndim == 3 and picked.shape[2] == 4 and scores.shape == (1, 2, 256)
    report = api.validate(path, out)
    assert report["passed"] and report["post_processing"] is not None


def test_inspect_analyses_the_network_before_the_post_processing(tmp_path):
    path = tmp_path / "det.onnx"
    onnx.save(detector(), path)
    report = api.inspect(path)
    assert report["analysed"] and report["prunable_groups"] == 2
    assert "NonMaxSuppression" in report["post_processing"]
    assert report["unsupported_ops"] == ["NonMaxSuppression"]


def test_prune_refuses_when_weights_follow_the_op(tmp_path):
    path = tmp_path / "det.onnx"
    onnx.save(detector(conv_after_nms=True), path)
    with pytest.raises(PreflightError, match=r"NonMaxSuppression .*a layer with weights, Conv node"):
        prune(path, output=tmp_path / "out.onnx", target_flops=0.5)


def test_the_whole_check_fails_when_the_written_back_outputs_change_type():
    model = detector()
    network, post, _ = split_post_processing(model, convertible_in(model))
    whole = attach_post_processing(network, post)
    cast = helper.make_node("Cast", ["picked"], ["picked_int"], to=TensorProto.INT64)
    whole.graph.node.append(cast)
    whole.graph.output[0].CopyFrom(helper.make_tensor_value_info("picked_int", TensorProto.INT64, [1, "kept", 4]))
    with pytest.raises(ValidationFailedError, match="'picked' after its post-processing is int64"):
        check_whole(whole, model, _feeds(model), device="cpu", label="w.onnx")
