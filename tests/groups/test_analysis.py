from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.errors import BadInputError
from darp_onnx.groups import analyse, name_nodes
from tests.groups import models


def _channel_groups(analysis):
    return [g for g in analysis.groups if g.kind == "channel"]


def test_conv_chain_has_one_group_per_conv_and_freezes_the_output():
    analysis = analyse(models.conv_chain())
    sizes = [(g.size, g.frozen is None) for g in _channel_groups(analysis)]
    assert sizes == [(6, True), (5, True), (4, False)]
    assert "graph output" in analysis.groups[2].frozen


def test_batchnorm_vectors_and_weights_follow_the_conv():
    model = models.conv_chain()
    analysis = analyse(model)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    for name in bn.input[1:]:
        assert analysis.axis_maps[(name, 0)].segments[0].group == 0
    conv2 = [n for n in model.graph.node if n.op_type == "Conv"][1]
    assert analysis.axis_maps[(conv2.input[1], 1)].segments[0].group == 0
    assert analysis.axis_maps[(conv2.input[1], 0)].segments[0].group == 1


def test_residual_add_couples_both_operands_and_finds_branches():
    analysis = analyse(models.residual())
    assert [g.size for g in analysis.prunable() if g.kind == "channel"] == [8, 6, 4]
    assert len(analysis.branches) == 2
    assert all(analysis.groups[b.group].min_keep == 0 for b in analysis.branches)
    assert len(analysis.branches[0].nodes) == 5  # conv, bn, relu, conv, bn


def test_split_and_concat_make_segments():
    model = models.c2f()
    analysis = analyse(model)
    concat = next(n for n in model.graph.node if n.op_type == "Concat")
    amap = analysis.axis_maps[(concat.output[0], 1)]
    groups = [s.group for s in amap.segments]
    assert [s.offset for s in amap.segments] == [0, 4, 8]
    assert groups[1] == groups[2]  # the bottleneck output is coupled with its input half
    assert groups[0] != groups[1]
    assert len(analysis.shape_edits) == 2


def test_depthwise_passes_channels_and_squeeze_excitation_couples():
    model = models.depthwise_se()
    analysis = analyse(model)
    assert [g.size for g in analysis.prunable()] == [8, 4]
    assert [e.attr for e in analysis.shape_edits] == ["group"]


def test_flatten_into_gemm_repeats_channels():
    model = models.flatten_gemm()
    analysis = analyse(model)
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    amap = analysis.axis_maps[(gemm.input[1], 0)]
    assert (amap.size, amap.repeat) == (20, 4)


def test_transpose_and_matmul_weights_are_tracked():
    model = models.reshape_matmul()
    analysis = analyse(model)
    assert [g.size for g in analysis.prunable() if g.kind == "channel"] == [6, 10]
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose")
    assert (transpose.output[0], 2) in analysis.axis_maps


def test_unknown_op_freezes_its_input_with_a_reason():
    analysis = analyse(models.unknown_op())
    assert "LpNormalization" in analysis.groups[1].frozen
    assert analysis.groups[0].frozen is None
    assert any("LpNormalization" in r for r in analysis.frozen_reasons)


def test_intermediate_graph_output_is_frozen():
    analysis = analyse(models.channel_output())
    assert "graph output" in analysis.groups[0].frozen
    assert analysis.groups[1].frozen is None


def test_all_kept_masks_cover_every_group():
    analysis = analyse(models.residual())
    masks = analysis.all_kept()
    assert sorted(masks) == [g.id for g in analysis.groups]
    assert all(np.all(m) for m in masks.values())


def test_unnamed_nodes_are_refused_then_named():
    model = models.conv_chain()
    model.graph.node[0].name = ""
    with pytest.raises(BadInputError, match="name_nodes"):
        analyse(model)
    assert len(analyse(name_nodes(model)).groups) == 3
