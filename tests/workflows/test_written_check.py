"""The written model is held to the masked proxy within float32 rounding, measured on the graph itself."""

from __future__ import annotations

import numpy as np
import pytest

import darp_onnx.workflows.common as common
from darp_onnx.errors import ValidationFailedError
from tests.groups.builder import GraphBuilder


def _model():
    b = GraphBuilder(41, opset=17)
    return b.build(b.conv(b.input("x", ["n", 3, 8, 8]), 3, 4))


def _outputs():
    """Mostly zeros, one value of 6: the tolerance near zero is atol x 6 = 6e-4."""
    values = np.zeros((2, 4, 8, 8), np.float32)
    values[0, 0, 0, 0] = 6.0
    return values


def _fake_runtime(monkeypatch, actual, plain):
    """onnxruntime's outputs: `actual` with its graph optimisations, `plain` without them."""
    def run_model(model, inputs, device, label, micro=False, optimized=True):
        return ([plain] if not optimized else [actual]), "CPUExecutionProvider", None
    monkeypatch.setattr(common, "run_model", run_model)


def test_a_gap_within_onnxruntimes_own_rounding_passes_and_a_larger_one_fails(monkeypatch):
    actual = _outputs()
    plain = actual + 1e-3  # the graph's own float32 rounding at these weights
    _fake_runtime(monkeypatch, actual, plain)
    inputs = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    check = common.check_written(_model(), inputs, [actual + 2e-3], device="cpu", label="m", against="proxy")
    assert check.max_abs_diff == pytest.approx(2e-3, rel=1e-3)
    with pytest.raises(ValidationFailedError, match="differs by up to"):
        common.check_written(_model(), inputs, [actual + 0.1], device="cpu", label="m", against="proxy")


def test_without_rounding_noise_the_usual_tolerance_holds(monkeypatch):
    actual = _outputs()
    _fake_runtime(monkeypatch, actual, actual.copy())
    inputs = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    with pytest.raises(ValidationFailedError):
        common.check_written(_model(), inputs, [actual + 2e-3], device="cpu", label="m", against="proxy")
