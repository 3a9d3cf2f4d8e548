"""`darp-onnx validate ORIGINAL PRUNED` through typer's CliRunner, on the small sample ResNet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from darp_onnx.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "sample_models" / "resnet.onnx"
DIGITS = ROOT / "sample_models" / "data" / "digits_source.npz"
FAST = ["--latency-runs", "2", "--device", "cpu"]

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["validate", *map(str, args), *FAST])


def _scaled_copy(path: Path, factor: float) -> Path:
    """The ResNet with its classifier weight scaled: same graph, drifting logits."""
    model = onnx.load(str(RESNET))
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == "fc.weight":
            scaled = numpy_helper.to_array(tensor) * np.float32(factor)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scaled, tensor.name))
    onnx.save(model, str(path))
    return path


def test_model_against_itself_passes_with_labels():
    result = _invoke(RESNET, RESNET, "--data", DIGITS, "--json", "--atol", "0", "--rtol", "0")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["failures"] == []
    assert doc["fidelity"]["top1_agreement"] == 1.0
    assert doc["fidelity"]["accuracy_before"] == doc["fidelity"]["accuracy_after"] > 0.9
    assert doc["data"] == {"source": str(DIGITS), "samples": 271, "labels": True, "preprocess": None,
                           "skipped_files": [], "notes": []}  # the test split (not images)
    assert doc["provider"]["pruned"] == "CPUExecutionProvider"
    assert doc["macs"]["ratio"] == 1.0 and doc["params"]["before"] == doc["params"]["after"] > 0
    assert doc["latency_ms"]["runs"] == 2 and doc["latency_ms"]["after"]["median_ms"] > 0
    assert doc["outputs"][0]["name"] == "logits" and doc["outputs"][0]["within_tolerance"] is True


def test_table_on_stderr_and_quiet_prints_nothing():
    result = _invoke(RESNET, RESNET, "--samples", "4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and "MACs" in result.stderr and "passed" in result.stderr
    quiet = _invoke(RESNET, RESNET, "--samples", "4", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_truncated_pruned_file_exits_2_naming_it(tmp_path):
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(RESNET.read_bytes()[:5000])
    result = _invoke(RESNET, broken)
    assert result.exit_code == 2, result.stderr
    assert str(broken) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_broken_edge_in_pruned_file_exits_2_naming_it(tmp_path):
    model = onnx.load(str(RESNET))
    model.graph.node[-1].input[0] = "no_such_tensor"
    broken = tmp_path / "broken_edge.onnx"
    onnx.save(model, str(broken))
    result = _invoke(RESNET, broken)
    assert result.exit_code == 2, result.stderr
    assert str(broken) in result.stderr and "ONNX checks" in result.stderr


def test_unreadable_original_is_bad_input(tmp_path):
    broken = tmp_path / "original.onnx"
    broken.write_bytes(b"not an onnx file at all")
    result = _invoke(broken, RESNET)
    assert result.exit_code == 1 and str(broken) in result.stderr


def test_drift_beyond_max_drift_exits_2_naming_output_and_amount(tmp_path):
    drifted = _scaled_copy(tmp_path / "drifted.onnx", 1.5)
    ok = _invoke(RESNET, drifted, "--samples", "8", "--max-drift", "0.9", "--json")
    assert ok.exit_code == 0, ok.stderr
    drift = json.loads(ok.stdout)["outputs"][0]["relative_error"]
    assert 0.3 < drift < 0.9
    result = _invoke(RESNET, drifted, "--samples", "8", "--max-drift", "0.05", "--json")
    assert result.exit_code == 2, result.stderr
    assert "'logits'" in result.stderr and f"{drift:.3g}" in result.stderr
    assert "--max-drift 0.05" in result.stderr
    doc = json.loads(result.stdout)  # the measurements are still printed
    assert doc["passed"] is False and doc["failures"]


def test_atol_failure_names_the_output(tmp_path):
    drifted = _scaled_copy(tmp_path / "drifted.onnx", 1.001)
    result = _invoke(RESNET, drifted, "--samples", "4", "--atol", "1e-6", "--rtol", "0")
    assert result.exit_code == 2 and "'logits'" in result.stderr and "atol 1e-06" in result.stderr


def test_cuda_without_a_gpu_is_a_clear_bad_input():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = runner.invoke(app, ["validate", str(RESNET), str(RESNET), "--device", "cuda"])
    assert result.exit_code == 1, result.stderr
    assert "--device cuda" in result.stderr and "--device cpu" in result.stderr


def test_input_mismatch_is_a_validation_failure(tmp_path):
    model = onnx.load(str(RESNET))
    model.graph.input[0].name = "renamed"
    model.graph.node[0].input[0] = "renamed"
    other = tmp_path / "renamed.onnx"
    onnx.save(model, str(other))
    result = _invoke(RESNET, other, "--samples", "2")
    assert result.exit_code == 2 and str(other) in result.stderr


def test_quiet_and_verbose_exclude_each_other():
    result = _invoke(RESNET, RESNET, "-q", "-v")
    assert result.exit_code == 1 and "exclude each other" in result.stderr


def test_missing_pruned_path_is_bad_input(tmp_path):
    result = _invoke(RESNET, tmp_path / "missing.onnx")
    assert result.exit_code == 1 and "missing.onnx" in result.stderr


def test_a_model_with_a_declared_batch_of_one_runs_one_sample_at_a_time(tmp_path):
    """A transformer exported at batch 1 failed validate: 64 samples were stacked on its fixed batch axis."""
    from tests.test_ingest import fixed_batch

    model = fixed_batch()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    result = runner.invoke(app, ["validate", str(path), str(path), "--json", "--samples", "8", *FAST])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fidelity"]["relative_error"] == 0.0


def test_continued_onnxruntime_messages_keep_their_indented_lines():
    from darp_onnx.errors import first_line

    error = RuntimeError("Got invalid dimensions for input: roles for the following indices\n index: 0 Got: 64 "
                         "Expected: 1\nPlease fix either the inputs/outputs or the model.")
    assert first_line(error) == ("Got invalid dimensions for input: roles for the following indices index: 0 Got: 64 "
                                 "Expected: 1")
    assert first_line(ValueError("")) == "ValueError"


def test_validate_warns_as_prune_would(tmp_path):
    """hama's recogniser, pruned with data, read nothing: prune warned, `validate` on the same model said only
    'passed'. It now gives the warnings prune gives on the samples it ran (a negated classifier: picks lost)."""
    flipped = _scaled_copy(tmp_path / "flipped.onnx", -1.0)
    result = _invoke(RESNET, flipped, "--data", DIGITS, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["passed"] and not doc["ids_only"]
    assert any("top class on only" in w for w in doc["warnings"])
    assert "top class on only" in result.stderr
    same = json.loads(_invoke(RESNET, RESNET, "--data", DIGITS, "--json").stdout)
    assert [w for w in same["warnings"] if "runs slower" not in w] == []  # 2 timing runs: noise may say slower


def test_validate_without_data_draws_other_samples_than_a_data_free_prune_trains_on():
    """A data-free prune trains on synthetic samples drawn at its --seed; `validate` at the same --seed must
    not measure on those (a Thai word segmenter: 0.03 on them, 0.44-0.58 on fresh ones)."""
    from darp_onnx.training.dataset import FRESH_SEED_OFFSET, synthetic_dataset
    from darp_onnx.validation.compare import _dataset

    model = onnx.load(str(RESNET))
    fitted = synthetic_dataset(model, samples=8, seed=0)
    measured = _dataset(None, model, {}, 8, 0, None)
    name = next(iter(fitted.inputs))
    assert not np.allclose(measured.inputs[name], fitted.inputs[name])
    np.testing.assert_array_equal(measured.inputs[name],
                                  synthetic_dataset(model, samples=8, seed=FRESH_SEED_OFFSET).inputs[name])
