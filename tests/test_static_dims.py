"""Sizes read at run time that the recorded shapes fix become constants (`load.static_dims`); free dims and
sizes multiplied into a flattened axis stay run-time reads."""

from __future__ import annotations

import numpy as np

from darp_onnx.load.static_dims import fold_static_dim_reads
from tests.groups.builder import GraphBuilder
from tests.onnx_case import run_ort


def _reshaped(multiply: bool):
    """x [N, 4, 6, 5] reshaped to [N, C, -1] (C = 4 read from Shape(x)), or to [N, C * H, -1] with `multiply`;
    N is always read from Shape(x) too."""
    b = GraphBuilder(5)
    x = b.input("x", ["N", 4, 6, 5])
    shape = b.op("Shape", x)

    def read(k: int) -> str:
        return b.op("Unsqueeze", b.op("Gather", shape, b.const(np.array(k, np.int64)), axis=0),
                    b.const(np.array([0], np.int64)))

    middle = b.op("Mul", read(1), read(2)) if multiply else read(1)
    target = b.op("Concat", read(0), middle, b.const(np.array([-1], np.int64)), axis=0)
    return b.build(b.op("Reshape", x, target))


def test_fixed_sizes_are_folded_and_the_free_batch_is_still_read():
    model = _reshaped(multiply=False)
    folded, count = fold_static_dim_reads(model)
    assert count == 1  # C; the batch N is a name in the recorded shapes
    assert sum(n.op_type == "Gather" for n in folded.graph.node) == 1
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 4, 6, 5)).astype(np.float32)
        np.testing.assert_array_equal(run_ort(folded, {"x": x})[0], run_ort(model, {"x": x})[0])


def test_sizes_multiplied_into_a_flattened_axis_stay_read_at_run_time():
    model = _reshaped(multiply=True)
    assert fold_static_dim_reads(model) == (model, 0)
