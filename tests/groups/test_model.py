from __future__ import annotations

import numpy as np
import torch

from darp_onnx.groups import AxisMap, Segment, ShapeEdit
from darp_onnx.search.gates import gate_vector


def _map() -> AxisMap:
    # units: [g0[2:4], fixed, g1[0:2]] with 3 features per unit (a Flatten of 3 pixels)
    return AxisMap("t", 1, 15, (Segment(0, 2, 4, 0), Segment(1, 0, 2, 3)), repeat=3)


def test_kept_indices_follow_segments_and_repeat():
    masks = {0: np.array([1, 1, 0, 1], bool), 1: np.array([0, 1], bool)}
    kept = _map().kept_indices(masks)
    np.testing.assert_array_equal(kept, [3, 4, 5, 6, 7, 8, 12, 13, 14])
    assert _map().kept_count(masks) == 9


def test_missing_group_masks_keep_everything():
    assert _map().kept_count({}) == 15


def test_kept_in_counts_a_range():
    masks = {0: np.array([1, 1, 0, 1], bool), 1: np.array([0, 1], bool)}
    assert _map().kept_in(masks, 0, 9) == 6


def test_gate_vector_is_differentiable_and_ones_on_fixed():
    g0 = torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
    g1 = torch.tensor([0.5, 0.6], requires_grad=True)
    vec = gate_vector(_map(), {0: g0, 1: g1})
    expected = torch.tensor([0.3] * 3 + [0.4] * 3 + [1.0] * 3 + [0.5] * 3 + [0.6] * 3)
    torch.testing.assert_close(vec, expected)
    vec.sum().backward()
    torch.testing.assert_close(g0.grad, torch.tensor([0.0, 0.0, 3.0, 3.0]))


def test_shape_edit_without_axis_map_keeps_the_original_count():
    edit = ShapeEdit("split", 1, 0, ("missing", 1), 0, 7)
    assert edit.value({}, {}) == 7
