"""Outputs the original leaves NaN on purpose (a graph network's targets its mask switches off): nothing is
fitted or compared there, and the pruned model is written. Before, the fine-tune's loss was NaN from its
first step and validation refused the written model ("output 'pred_mean' contains NaN or Inf")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from darp_onnx.errors import ValidationFailedError
from darp_onnx.search.loss import TaskLoss
from darp_onnx.validation.checks import check_equivalence
from tests.groups.builder import GraphBuilder


def masked_output_model() -> onnx.ModelProto:
    """-inf wherever the input's first channel is negative (a masked log-probability), the network's output
    elsewhere."""
    b = GraphBuilder(41)
    x = b.input("x", ["N", 3, 6, 6])
    y = b.conv(b.op("Relu", b.conv(b.op("Relu", b.conv(x, 3, 8)), 8, 8)), 8, 2)
    first = b.op("Slice", x, b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64)),
                 b.const(np.array([1], np.int64)))
    off = b.op("Less", first, b.const(np.array(0.0, np.float32)))
    return b.build(b.op("Where", off, b.const(np.array(-np.inf, np.float32)), y))


def test_the_loss_ignores_what_the_teacher_leaves_nan():
    teacher = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    loss = TaskLoss(teacher=[teacher])
    out = torch.tensor([[2.0, np.nan], [3.0, 5.0]], requires_grad=True)
    value = loss((out,), np.array([0, 1]))
    value.backward()
    value = value.detach()
    assert torch.isfinite(value) and torch.isfinite(out.grad).all()
    assert float(value) == pytest.approx((1.0 + 0.0 + 1.0) / 3 / np.var([1.0, 3.0, 4.0], ddof=1))


def test_nan_where_the_reference_has_nan_is_equivalent_and_a_new_nan_is_not():
    expected = np.array([1.0, np.nan, 2.0])
    check_equivalence([np.array([1.0, np.nan, 2.0])], [expected], ["y"], "pruned")
    with pytest.raises(ValidationFailedError, match="contains NaN or Inf"):
        check_equivalence([np.array([np.nan, np.nan, 2.0])], [expected], ["y"], "pruned")


def test_a_model_with_nan_by_design_is_pruned_and_written(tmp_path):
    import darp_onnx

    model = masked_output_model()
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.6, search_steps=4, finetune_steps=2,
                             batch_size=4, synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert result.flops_after < result.flops_before
    assert np.isfinite(result.validation.fidelity.relative_error)
    onnx.save(model, tmp_path / "m.onnx")
    report = darp_onnx.validate(tmp_path / "m.onnx", tmp_path / "p.onnx", latency_runs=2, samples=8)
    assert np.isfinite(report["fidelity"]["relative_error"])


def test_an_output_with_nan_that_varies_elsewhere_is_not_called_constant():
    from darp_onnx.training.synthetic_check import constant_outputs

    model = masked_output_model()
    varying = np.array([[np.nan, 1.0], [np.nan, 2.0]])
    assert constant_outputs(model, [varying]) is None
    assert constant_outputs(model, [np.array([[np.nan, 1.0], [np.nan, 1.0]])]) is not None


def test_the_user_is_told_which_outputs_hold_no_number():
    from darp_onnx.validation.nonfinite import nonfinite_note

    pitch, confidence = np.full((4, 62), np.nan), np.zeros((4, 62))
    note = nonfinite_note(["pitch", "confidence"], [pitch, confidence], synthetic=True)
    assert "'pitch' in 100% of its elements" in note and "confidence" not in note
    assert "pass --data" in note
    partial = nonfinite_note(["y"], [np.array([1.0, np.inf, 2.0, 3.0])], synthetic=False)
    assert "'y' in 25% of its elements" in partial and "not measured" not in partial
    assert nonfinite_note(["y"], [np.ones(3)], synthetic=True) is None


def conditioned_model() -> onnx.ModelProto:
    """A network scaled by log(sigma) of a per-sample noise level: NaN in every element for a negative sigma
    (standard normal synthetic values give half of them)."""
    b = GraphBuilder(42)
    x, sigma = b.input("x", ["N", 3, 6, 6]), b.input("sigma", ["N"])
    y = b.conv(b.op("Relu", b.conv(b.op("Relu", b.conv(x, 3, 8)), 8, 8)), 8, 2)
    scale = b.op("Unsqueeze", b.op("Log", sigma), b.const(np.array([1, 2, 3], np.int64)))
    return b.build(b.op("Mul", y, scale))


def test_samples_with_no_number_in_any_output_are_found():
    from darp_onnx.validation.nonfinite import samples_without_numbers

    a = np.array([[np.nan, np.nan], [1.0, np.nan], [np.inf, -np.inf]])
    b = np.array([[np.nan], [np.nan], [2.0]])
    assert samples_without_numbers([a, b]).tolist() == [True, False, False]
    assert samples_without_numbers([a, np.zeros((3, 1), np.int64)]).tolist() == [True, False, True]


def test_samples_the_model_cannot_take_are_left_out_and_the_rest_pruned(tmp_path):
    import darp_onnx

    notes = []
    result = darp_onnx.prune(conditioned_model(), output=tmp_path / "p.onnx", target_flops=0.6, search_steps=4,
                             finetune_steps=2, batch_size=4, synthetic_samples=16, latency_runs=2,
                             channel_multiple=1, max_drift="off",
                             progress=lambda kind, info: notes.append(str(info.get("message", ""))))
    assert any("give NaN or infinite values in every output" in n for n in notes)
    assert np.isfinite(result.validation.fidelity.relative_error)


def test_a_pruned_output_with_nan_where_the_original_has_numbers_fails():
    from darp_onnx.validation.checks import fidelity

    with pytest.raises(ValidationFailedError, match="'y' is NaN or infinite where the original's is a number"):
        fidelity([np.array([[np.nan, 1.0]])], [np.array([[0.5, 1.0]])], names=["y"])


def test_a_first_sample_with_no_number_does_not_make_the_outputs_constant():
    """The terrain UNet's first synthetic sample (a negative sigma) was all NaN: every difference from it was
    NaN, and the note said the outputs were the same for every synthetic input."""
    from darp_onnx.training.synthetic_check import constant_outputs

    values = np.array([[np.nan, np.nan], [1.0, 2.0], [3.0, 2.0]])
    assert constant_outputs(masked_output_model(), [values]) is None
    assert constant_outputs(masked_output_model(), [np.array([[np.nan, np.nan], [1.0, 2.0], [1.0, 2.0]])])
