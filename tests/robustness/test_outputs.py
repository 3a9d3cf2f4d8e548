"""Careless inputs that must work (data in NumPy's default dtypes), all-or-nothing writes with the
user's file mode, and a folder that cannot be written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

import darp_onnx
from darp_onnx.errors import BadInputError
from darp_onnx.load.staging import new_file_mode
from darp_onnx.training.dtypes import cast_lossless, conform_labels
from tests.robustness.harness import assert_failed_cleanly, invoke, snapshot
from tests.robustness.models import tiny

FAST = dict(target_flops=0.6, search_steps=2, finetune_steps=0, batch_size=8, channel_multiple=1, latency_runs=1)


@pytest.fixture()
def folder(tmp_path) -> Path:
    onnx.save(tiny(symbolic_size=False), str(tmp_path / "model.onnx"))
    rng = np.random.default_rng(0)
    with open(tmp_path / "data64.npz", "wb") as handle:  # float64 inputs, int32 labels: NumPy's habits
        np.savez(handle, x=rng.standard_normal((16, 3, 16, 16)), labels=rng.integers(0, 10, 16).astype(np.int32))
    return tmp_path


def test_float64_data_and_int32_labels_are_cast_and_the_outputs_get_the_umask_mode(folder):
    out, report = folder / "out.onnx", folder / "report"
    result = invoke(["prune", folder / "model.onnx", "-o", out, "--data", folder / "data64.npz", "--steps", "2",
                     "--finetune-steps", "0", "--channel-multiple", "1", "--report", report, "-q"])
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert out.stat().st_mode & 0o777 == new_file_mode() != 0o600
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "report.json", "report.md"]
    assert (report / "report.json").stat().st_mode & 0o777 == new_file_mode()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"


def test_a_failing_report_leaves_no_model_either(folder, monkeypatch):
    from darp_onnx.workflows import outputs

    def broken(*args, **kwargs):
        raise BadInputError("report rendering failed")

    monkeypatch.setattr(outputs, "stage_reports", broken)
    before = snapshot(folder)
    with pytest.raises(BadInputError, match="report rendering failed"):
        darp_onnx.prune(folder / "model.onnx", output=folder / "out.onnx", report=folder / "report", **FAST)
    assert snapshot(folder) == before


def test_an_unwritable_folder_is_reported_before_any_work(folder):
    target = Path("/sys/darp-onnx-out.onnx")  # sysfs refuses new files even to root
    if os.name != "posix" or not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("needs Linux's read-only /sys")
    before = snapshot(folder)
    outcome = invoke(["prune", folder / "model.onnx", "-o", target])
    assert_failed_cleanly(outcome, code=1, message="cannot write into /sys", before=before, after=snapshot(folder))
    assert outcome.seconds < 5


@pytest.mark.parametrize(("array", "target", "expected"), [
    (np.array([1.5, -2.0]), np.float32, np.float32),
    (np.array([1, 2], np.int64), np.int32, np.int32),
    (np.array([1, 2], np.int32), np.int64, np.int64),
    (np.array([0, 255], np.uint8), np.float32, np.float32),
    (np.array([True, False]), np.float32, np.float32),
])
def test_lossless_casts(array, target, expected):
    cast = cast_lossless(array, target, "data")
    assert cast.dtype == expected and np.array_equal(cast, array.astype(expected))


@pytest.mark.parametrize(("array", "target", "message"), [
    (np.array([2**40], np.int64), np.int32, "would change values"),
    (np.array([0.5]), np.int64, "would change values"),
    (np.array([1e39]), np.float32, "beyond its range"),
    (np.array(["a"]), np.float32, "no strings or objects"),
])
def test_lossy_casts_are_refused_in_one_line(array, target, message):
    with pytest.raises(BadInputError, match=message):
        cast_lossless(array, target, "data")


def test_labels_become_int64_class_indices():
    assert conform_labels(np.array([1.0, 2.0]), "d").dtype == np.int64
    with pytest.raises(BadInputError, match="must be integers"):
        conform_labels(np.array([True, False]), "d")


def test_an_inf_floor_constant_passes_but_an_inf_layer_weight_does_not():
    from onnx import helper, numpy_helper

    from darp_onnx.load.preflight import check_weights

    model = tiny(symbolic_size=False)  # a -inf floor for Max, as jax2tf writes it
    model.graph.initializer.append(numpy_helper.from_array(np.array(-np.inf, np.float32), "floor"))
    model.graph.node.append(helper.make_node("Max", ["floor", "y"], ["y_floor"], name="floor_max"))
    check_weights(model, "m")
    conv = next(t for t in model.graph.initializer if t.name == "conv1.w")
    values = numpy_helper.to_array(conv).copy()
    values.flat[0] = -np.inf
    conv.CopyFrom(numpy_helper.from_array(values, "conv1.w"))
    with pytest.raises(BadInputError, match="weight 'conv1.w' holds 1 NaN/Inf"):
        check_weights(model, "m")
    check_weights(model, "m", allow_nonfinite=True)
