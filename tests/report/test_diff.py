"""`diff_models`: matching, removed / resized nodes, attribute changes and totals that equal direct counts."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import helper

from darp_onnx.cost import count_graph
from darp_onnx.report import diff_models
from tests.report.cases import cnn, depthwise

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def test_totals_equal_direct_counts():
    a, b = cnn(), cnn(5, drop_relu=True)
    diff = diff_models(a, b)
    count_a, count_b = count_graph(a), count_graph(b)
    assert (diff.macs.before, diff.macs.after) == (count_a.macs, count_b.macs)
    assert (diff.params.before, diff.params.after) == (count_a.params, count_b.params)
    assert (diff.nodes.before, diff.nodes.after) == (len(a.graph.node), len(b.graph.node))
    assert (diff.serialized_bytes.before, diff.serialized_bytes.after) == (a.ByteSize(), b.ByteSize())
    assert diff.op_types["Relu"].before == 2 and diff.op_types["Relu"].after == 1
    assert sum(c.before for c in diff.op_types.values()) == len(a.graph.node)
    for row in diff.layers:
        assert row.macs_before == count_a.node_macs[row.name]
        assert row.macs_after == count_b.node_macs[row.name]
    # hand-computed: conv1 8*16*16*27, conv2 8*256*72, fc 80; pruned conv1 5*256*27, conv2 8*256*45
    assert diff.macs.before == 55296 + 147456 + 80
    assert diff.macs.after == 34560 + 92160 + 80
    assert diff.macs.percent == pytest.approx(100 * (126800 - 202832) / 202832)


def test_model_against_itself_reports_no_change():
    model = cnn()
    diff = diff_models(model, model)
    assert diff.unchanged
    assert not (diff.added or diff.removed or diff.resized or diff.attribute_changes)
    assert diff.matched_by_name == len(model.graph.node) and not diff.matched_by_position
    assert not diff.macs.changed and not diff.params.changed and not diff.nodes.changed
    assert all(row.channels_before == row.channels_after for row in diff.layers)
    assert diff.warnings == []


def test_pruned_copy_lists_exactly_the_removed_and_resized_nodes():
    diff = diff_models(cnn(), cnn(5, drop_relu=True))
    assert [(n.name, n.op_type) for n in diff.removed] == [("relu1", "Relu")]
    assert diff.added == [] and diff.attribute_changes == []
    resized = {n.name: n for n in diff.resized}
    assert sorted(resized) == ["conv1", "conv2"]
    conv1 = resized["conv1"]
    assert [(w.name_after, w.shape_before, w.shape_after) for w in conv1.weights] == [
        ("conv1.w", (8, 3, 3, 3), (5, 3, 3, 3)),
        ("conv1.b", (8,), (5,)),
    ]
    assert (conv1.channels.out_before, conv1.channels.out_after) == (8, 5)
    assert (conv1.channels.in_before, conv1.channels.in_after) == (3, 3)
    conv2 = resized["conv2"].channels
    assert (conv2.in_before, conv2.in_after, conv2.out_before, conv2.out_after) == (8, 5, 8, 8)
    layers = {row.name: (row.op_type, row.channels_before, row.channels_after) for row in diff.layers}
    assert layers == {"conv1": ("Conv", 8, 5), "conv2": ("Conv", 8, 8), "fc": ("Gemm", 10, 10)}


def test_unnamed_nodes_are_matched_by_position_and_op_type():
    diff = diff_models(cnn(named=False), cnn(5, drop_relu=True, named=False))
    assert [(n.name, n.op_type) for n in diff.removed] == [("#1", "Relu")]
    assert diff.added == []
    assert [n.name_before for n in diff.resized] == ["#0", "#2"]
    assert diff.matched_by_name == 0 and len(diff.matched_by_position) == 6


def test_renamed_and_added_nodes():
    a = cnn()
    b = cnn()
    b.graph.node[0].name = "stem"  # renamed, same op and position: matched by position
    b.graph.node.append(helper.make_node("Identity", ["y"], ["y2"], name="extra"))
    b.graph.output[0].name = "y2"
    diff = diff_models(a, b)
    assert diff.matched_by_position == [("conv1", "stem")]
    assert [(n.name, n.op_type) for n in diff.added] == [("extra", "Identity")]
    assert diff.removed == []


def test_group_attribute_change_and_depthwise_channels():
    diff = diff_models(depthwise(8), depthwise(5))
    changes = [(c.node, c.attribute, c.before, c.after) for c in diff.attribute_changes]
    assert changes == [("dw", "group", 8, 5)]
    dw = {n.name: n for n in diff.resized}["dw"].channels
    assert (dw.in_before, dw.in_after, dw.out_before, dw.out_after) == (8, 5, 8, 5)


def test_unordered_graph_is_matched_in_topological_order():
    a = cnn(named=False)
    b = cnn(named=False)
    nodes = list(b.graph.node)
    del b.graph.node[:]
    b.graph.node.extend(reversed(nodes))  # same graph, stored backwards
    diff = diff_models(a, b)
    assert diff.unchanged


def test_input_shapes_reach_the_count_and_unknown_shapes_become_a_warning():
    a, b = cnn(size=16), cnn(5, drop_relu=True, size=16)
    diff = diff_models(a, b, input_shapes={"x": (1, 3, 32, 32)})
    assert diff.macs.before == count_graph(a, {"x": (1, 3, 32, 32)}).macs == 4 * 202752 + 80
    symbolic = cnn()
    symbolic.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    diff = diff_models(symbolic, symbolic)
    assert diff.macs.before is None and diff.params.before == count_graph(cnn()).params
    assert diff.warnings and "--input-shape" in diff.warnings[0]


def test_latency_can_be_filled_by_the_caller():
    diff = diff_models(cnn(), cnn(5))
    diff.latency_ms_before, diff.latency_ms_after = 2.0, 1.5
    assert diff.latency_ms.percent == pytest.approx(-25.0)


@pytest.mark.skipif(not (SAMPLES / "resnet.onnx").exists(), reason="sample_models/resnet.onnx not built")
def test_sample_model_against_itself():
    model = onnx.load(str(SAMPLES / "resnet.onnx"))
    diff = diff_models(model, model)
    count = count_graph(model)
    assert diff.unchanged and diff.macs.before == count.macs and diff.params.after == count.params
    assert len(diff.layers) == sum(n.op_type in ("Conv", "Gemm") for n in model.graph.node)
