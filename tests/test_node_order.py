"""Graphs whose nodes are out of order (onnxruntime runs them) are sorted on load, never refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import darp_onnx
from darp_onnx.errors import BadInputError
from darp_onnx.load.io import load_model
from darp_onnx.load.order import out_of_order, sort_nodes, topological_order
from darp_onnx.runtime.session import make_session, run_session
from tests.groups.builder import GraphBuilder


def _conv_net() -> onnx.ModelProto:
    b = GraphBuilder(23)
    return b.build(b.conv(b.op("Relu", b.conv(b.input("x", ["n", 3, 8, 8]), 3, 8)), 8, 4))


def _reversed(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with its nodes written last first (as @imgly's ISNet export has its input Cast last)."""
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    nodes = list(shuffled.graph.node)[::-1]
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(copies)
    return shuffled


def test_sort_restores_an_order_that_onnx_accepts():
    shuffled = _reversed(_conv_net())
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(shuffled)
    assert out_of_order(shuffled.graph) and sort_nodes(shuffled.graph)
    onnx.checker.check_model(shuffled)
    assert not out_of_order(shuffled.graph) and not sort_nodes(shuffled.graph)


def test_sort_is_stable_and_a_cycle_is_left_as_it_is():
    model = _conv_net()
    assert topological_order(model.graph) == list(range(len(model.graph.node)))
    model.graph.node[0].input[0] = model.graph.node[-1].output[0]  # the first node reads the last one's output
    assert topological_order(model.graph) is None and not sort_nodes(model.graph)


def test_a_file_out_of_order_loads_and_prunes(tmp_path):
    path = tmp_path / "shuffled.onnx"
    onnx.save_model(_reversed(_conv_net()), str(path))
    loaded = load_model(path)
    onnx.checker.check_model(loaded)
    result = darp_onnx.prune(str(path), output=tmp_path / "p.onnx", target_flops=0.6, search_steps=4,
                             finetune_steps=2, synthetic_samples=8, latency_runs=2, channel_multiple=1)
    assert result.flops_after < result.flops_before
    assert out_of_order(onnx.load(str(path)).graph)  # the input file is never rewritten


def test_a_model_object_out_of_order_is_sorted_on_a_copy(tmp_path):
    shuffled = _reversed(_conv_net())
    first = shuffled.graph.node[0].name
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = run_session(make_session(_conv_net()), {"x": x})
    result = darp_onnx.prune(shuffled, output=tmp_path / "p.onnx", target_flops=0.6, search_steps=4,
                             finetune_steps=2, synthetic_samples=8, latency_runs=2, channel_multiple=1)
    assert result.flops_after < result.flops_before
    assert shuffled.graph.node[0].name == first  # the caller's object is untouched
    assert expected[0].shape == run_session(make_session(result.model), {"x": x})[0].shape


def test_a_truly_dangling_edge_is_still_refused(tmp_path):
    model = _reversed(_conv_net())
    model.graph.node[-1].input[0] = "nobody_makes_this"
    path = tmp_path / "dangling.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(BadInputError, match="nobody_makes_this"):
        darp_onnx.prune(str(path), output=tmp_path / "p.onnx", search_steps=2, finetune_steps=1)


def test_what_a_sub_graph_reads_from_outside_orders_its_node():
    """An If whose branch reads 'b', produced by a node written after it: the producer is moved first."""
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("Identity", ["b"], ["out"])], "then",
                               [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["out2"])], "else",
                              [], [helper.make_tensor_value_info("out2", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch, else_branch=other),
             helper.make_node("Neg", ["x"], ["b"], name="neg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    assert topological_order(graph) == [1, 0] and sort_nodes(graph)
    assert [n.name for n in graph.node] == ["neg", "if"]
