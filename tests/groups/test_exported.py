"""The analysis on patterns exporters write: shape sub-graphs, recurrent layers, channels-last graphs."""

from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.groups import analyse
from darp_onnx.groups.rules_reshape import map_reshape
from darp_onnx.groups.tracer import Layout
from tests.groups import models_exported as models
from tests.groups.harness import assert_equivalent, random_masks


def _prunable_sizes(analysis) -> list[int]:
    return [g.size for g in analysis.prunable() if g.kind == "channel"]


@pytest.mark.parametrize(("name", "sizes"), [
    ("view_batch_flatten", [6]),
    ("flatten_by_products", [5]),
    ("interpolate_to_shape", [4, 6, 5]),
    ("view_channels_literal", [6]),
    ("broadcast_like", [6]),
])
def test_shape_subgraphs_leave_the_channels_prunable(name, sizes):
    assert _prunable_sizes(analyse(models.MODELS[name]())) == sizes


def test_a_literal_channel_count_in_a_computed_target_is_edited():
    model = models.view_channels_literal()
    analysis = analyse(model)
    concat = next(n for n in model.graph.node if n.op_type == "Concat")
    edits = [(e.node, e.input_index, e.element) for e in analysis.shape_edits]
    assert edits == [(concat.name, 1, 0)]


def test_a_channel_count_used_as_data_freezes_with_the_reading_node():
    analysis = analyse(models.channel_count_as_data())
    assert "Range" in analysis.groups[0].frozen
    assert "channel count read at run time" in analysis.groups[0].frozen


def test_lstm_input_is_a_sink_and_its_hidden_size_is_frozen():
    model = models.crnn_lstm()
    analysis = analyse(model)
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    amap = analysis.axis_maps[(lstm.input[1], 2)]
    assert (amap.size, amap.repeat) == (8, 2)
    assert amap.segments[0].group == analysis.prunable()[0].id
    hidden = next(g for g in analysis.groups if "hidden" in g.label)
    assert hidden.size == 5 and "recurrence" in hidden.frozen


def test_unrolled_lstm_cells_prune_their_hidden_units():
    analysis = analyse(models.unrolled_lstm_cell())
    assert sorted(_prunable_sizes(analysis)) == [3, 6]


def test_slice_bounds_behind_unsqueeze_are_edited_at_their_constant():
    model = models.slice_view_bounds()
    analysis = analyse(model)
    assert _prunable_sizes(analysis) == [5, 3]
    unsqueezes = {n.name for n in model.graph.node if n.op_type == "Unsqueeze"}
    assert {e.node for e in analysis.shape_edits} == unsqueezes


def test_channels_last_flatten_interleaves_channels_with_pixels():
    model = models.channels_last()
    analysis = analyse(model)
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    amap = analysis.axis_maps[(matmul.input[1], 0)]
    assert (amap.size, amap.repeat, amap.tile) == (80, 1, 16)
    masks = {amap.segments[0].group: np.array([1, 0, 0, 1, 1], bool)}
    kept = amap.kept_indices(masks)
    assert list(kept[:6]) == [0, 3, 4, 5, 8, 9]  # pixel 0 keeps channels 0, 3, 4; pixel 1 starts at 5


def test_per_channel_constants_behind_a_reshape_are_sliced_with_the_target_edited():
    model = models.paddle_bias_reshape()
    analysis = analyse(model)
    assert _prunable_sizes(analysis) == [6]
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    assert analysis.axis_maps[(reshape.input[0], 0)].size == 6
    assert [(e.node, e.element) for e in analysis.shape_edits] == [(reshape.name, 1)]


def test_tokens_merged_into_channels_tile_the_dense_input():
    model = models.tokens_into_channels()
    analysis = analyse(model)
    matmul = [n for n in model.graph.node if n.op_type == "MatMul"][1]
    amap = analysis.axis_maps[(matmul.input[1], 0)]
    assert (amap.size, amap.repeat, amap.tile) == (16, 1, 4)


@pytest.mark.parametrize(("in_shape", "axis", "out_shape", "expected"), [
    ((1, 4, 3, 3), 1, (1, 36), (1, 9, 1)),  # NCHW flatten: blocks of H*W
    ((1, 3, 3, 4), 3, (1, 36), (1, 1, 9)),  # NHWC flatten: H*W copies
    (("N", 4, "H", "W"), 1, ("N", 4, "unk"), (1, 1, 1)),  # dims after the channel axis unknown by name
    (("N", 4, 2, 5), 1, ("N", 8, 5), (1, 2, 1)),  # channels merged with the next axis
    ((5, 2, "N", 3), 3, (5, "N", 6), (2, 1, 2)),  # directions x hidden after an LSTM
])
def test_map_reshape_finds_the_channel_axis(in_shape, axis, out_shape, expected):
    lay = Layout(axis, np.arange(in_shape[axis]))
    new, reason = map_reshape(in_shape, lay, out_shape)
    assert reason == ""
    assert (new.axis, new.repeat, new.tile) == expected


def test_map_reshape_refuses_to_split_the_channel_axis():
    new, reason = map_reshape((1, 8, 4), Layout(1, np.arange(8)), (1, 2, 4, 4))
    assert new is None and "splits" in reason


@pytest.mark.parametrize(("opset", "before"), [(17, 0), (17, 1), (10, 3)])
def test_channels_padded_on_a_shortcut_go_with_what_they_are_added_to(opset, before):
    model = models.channel_padding_shortcut(opset, before)
    analysis = analyse(model)
    assert sorted(_prunable_sizes(analysis)) == sorted([4, 4 - before] + ([before] if before else []))
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert {(e.node, e.element) for e in analysis.shape_edits} == {(pad.name, 1), (pad.name, 5)}
    for seed in range(3):
        masks = random_masks(analysis, np.random.default_rng(seed))
        pruned = assert_equivalent(model, analysis, masks, seed)
        pruned_pad = next(n for n in pruned.graph.node if n.op_type == "Pad")
        assert pruned_pad.name == pad.name


def test_a_channel_axis_padded_by_reflection_stays_frozen():
    analysis = analyse(models.channel_padding_shortcut(mode="reflect"))
    assert "its mode is not constant" in analysis.groups[0].frozen


def test_grid_sample_moves_channels_and_freezes_its_coordinates():
    model = models.spatial_transformer()
    analysis = analyse(model)
    assert _prunable_sizes(analysis) == [4]
    coordinates = next(g for g in analysis.groups if g.size == 2)
    assert "sampling coordinates" in coordinates.frozen
    for seed in range(2):
        assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed)


@pytest.mark.parametrize("film", [False, True])
def test_group_norm_prunes_whole_groups(film):
    model = models.group_norm(film)
    analysis = analyse(model)
    blocks = [g for g in analysis.prunable() if g.kind == "channel"]
    assert [g.size for g in blocks] == [4] and "blocks of 2" in blocks[0].label
    assert blocks[0].width == 2 and blocks[0].unit_multiple(4) == 2 and blocks[0].unit_multiple(3) == 3
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    assert (reshape.name, 1, 1) in {(e.node, e.input_index, e.element) for e in analysis.shape_edits}
    for seed in range(3):
        assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed)


def test_a_group_norm_model_is_pruned_in_whole_groups_end_to_end(tmp_path):
    import darp_onnx

    result = darp_onnx.prune(models.group_norm(film=True), output=tmp_path / "p.onnx", target_flops=0.6,
                             search_steps=4, finetune_steps=2, batch_size=4, synthetic_samples=8, latency_runs=2,
                             channel_multiple=1, max_drift="off")
    assert result.flops_after < result.flops_before
    assert result.channels_removed > 0 and result.channels_removed % 2 == 0
