"""Integer outputs are compared as ids, with the padding of fixed-length rows left out (sudachi's tagger agreed
on 96.3% of its positions, most of them padding, with 0 of 200 sentences tagged alike)."""

from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.validation.checks import IDS_READING, fidelity
from darp_onnx.validation.outputs_kept import relative_error
from darp_onnx.validation.padded_ids import counted_positions, id_agreement, rows_alike

ORIGINAL = np.array([[5, 3, 4, 0, 0, 0, 0, 0],
                     [6, 2, 0, 0, 0, 0, 0, 0],
                     [5, 5, 3, 2, 1, 0, 0, 0],
                     [7, 0, 0, 0, 0, 0, 0, 0]])
PRUNED = np.array([[5, 3, 4, 0, 0, 0, 0, 0],   # alike
                   [6, 1, 0, 0, 0, 0, 0, 0],   # one tag of two wrong
                   [5, 2, 3, 2, 1, 0, 0, 0],   # one of five wrong
                   [7, 0, 0, 0, 0, 0, 0, 9]])  # a tag in the padding: not counted


def test_the_padding_at_the_ends_of_the_rows_is_left_out():
    counted = counted_positions(ORIGINAL)
    assert counted.sum(axis=1).tolist() == [3, 2, 5, 1]
    assert id_agreement(PRUNED, ORIGINAL) == pytest.approx(9 / 11)
    assert rows_alike(PRUNED, ORIGINAL) == pytest.approx(0.5)
    assert relative_error(PRUNED, ORIGINAL) == pytest.approx(2 / 11)  # the share of ids that differ, not an L2


def test_a_frequent_id_inside_the_rows_is_not_padding():
    original = np.array([[0, 1, 0, 2, 0, 3, 0, 4]] * 4)  # 0 fills half the positions, mostly inside
    assert counted_positions(original).all()
    pruned = original.copy()
    pruned[:, 2] = 9
    assert id_agreement(pruned, original) == pytest.approx(7 / 8)


def test_one_id_a_sample_is_compared_whole():
    original = np.array([0, 0, 0, 1, 2, 0])  # a classifier's ArgMax: a frequent class is no padding
    pruned = np.array([0, 1, 0, 1, 2, 0])
    assert id_agreement(pruned, original) == pytest.approx(5 / 6)
    assert rows_alike(pruned, original) is None


def test_fidelity_reads_a_taggers_ids_without_its_padding():
    fid = fidelity([PRUNED], [ORIGINAL], names=["tags"], ids=["tags"])
    assert fid.top1_agreement == pytest.approx(9 / 11)
    assert (fid.sequences_output, fid.sequences_kept, fid.sequences_read) == ("tags", 0.5, IDS_READING)
    assert fid.relative_error == pytest.approx(2 / 11)
    assert (PRUNED == ORIGINAL).mean() > 0.9  # what was reported before: the padding agrees


def test_float_outputs_alone_make_the_overall_error_beside_ids():
    scores = np.linspace(1.0, 2.0, 32, dtype=np.float32).reshape(4, 8)
    fid = fidelity([PRUNED, scores * 1.1], [ORIGINAL, scores], names=["tags", "scores"], ids=["tags"])
    assert fid.relative_error == pytest.approx(0.1, rel=1e-4)
