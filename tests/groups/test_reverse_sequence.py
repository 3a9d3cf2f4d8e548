"""ReverseSequence (the backward half of a Keras Bidirectional layer through tf2onnx): channels on any axis but
time and batch pass through; the pruned graph equals the gated one."""

from __future__ import annotations

import numpy as np

from darp_onnx.groups import analyse
from tests.groups.builder import GraphBuilder
from tests.groups.harness import assert_equivalent, random_masks


def _reversed_features(time_axis: int = 0, batch_axis: int = 1):
    """x [2, 3, 8] -> Conv1d 3 -> 6 -> Relu -> [8, 2, 6] (time-major) -> ReverseSequence -> MatMul 6 x 4."""
    b = GraphBuilder(9)
    h = b.op("Relu", b.op("Conv", b.input("x", [2, 3, 8]), b.weight(6, 3, 1), b.weight(6)))
    steps = b.op("Transpose", h, perm=[2, 0, 1])
    if (time_axis, batch_axis) == (1, 0):
        steps = b.op("Transpose", steps, perm=[1, 0, 2])
    back = b.op("ReverseSequence", steps, b.const(np.array([8, 5], np.int64)), time_axis=time_axis,
                batch_axis=batch_axis)
    return b.build(b.op("MatMul", back, b.weight(6, 4)))


def test_features_reversed_in_time_stay_prunable_and_rewrite_equal():
    for axes in ((0, 1), (1, 0)):
        model = _reversed_features(*axes)
        analysis = analyse(model)
        assert [g.size for g in analysis.prunable()] == [6]
        assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(0)))
