"""Gemm whose C is an activation (tf2onnx fuses MatMul + Add of two activations into one Gemm, as in an unrolled
GRU cell): C's channels are the output's, pruned together."""

from __future__ import annotations

import numpy as np

from darp_onnx.groups import analyse
from tests.groups.builder import GraphBuilder
from tests.groups.harness import assert_equivalent, random_masks


def fused_cell():
    """x [2, 6]: a = x W1 + b1; y = Relu(x W2 + a) (one Gemm, C = a); then y W3."""
    b = GraphBuilder(12)
    x = b.input("x", [2, 6])
    a = b.op("Gemm", x, b.weight(6, 8), b.weight(8))
    y = b.op("Relu", b.op("Gemm", x, b.weight(6, 8), a))
    return b.build(b.op("Gemm", y, b.weight(8, 3)))


def test_a_computed_c_is_pruned_with_the_gemm_output():
    model = fused_cell()
    analysis = analyse(model)
    assert [g.size for g in analysis.prunable()] == [8]
    for seed in (0, 1):
        assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed)
