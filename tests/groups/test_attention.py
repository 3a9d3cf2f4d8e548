"""Attention heads as units on both torch exporters' graphs: Q/K/V projections (split or fused) are
followed through the head split, Q K^T and attention x V, and the num_heads literals are edited."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from darp_onnx.groups import analyse
from darp_onnx.load.ingest import ingest
from tests.groups.models_attention import BUCKETS, DIM, EXPORTERS, FFN, HEADS, KINDS, LAYERS, SEQ, loaded


def _analysed(kind: str, dynamo: bool):
    model = ingest(loaded(kind, dynamo)).model
    return model, analyse(model)


@EXPORTERS
@pytest.mark.parametrize("kind", KINDS)
def test_every_layer_has_a_head_group_and_an_ffn_group(kind, dynamo):
    _, analysis = _analysed(kind, dynamo)
    prunable = [(g.kind, g.size) for g in analysis.prunable()]
    assert prunable.count(("head", HEADS)) == LAYERS
    assert prunable.count(("channel", FFN)) == LAYERS
    assert prunable.count(("branch", 1)) == 2 * LAYERS  # the attention and the FFN block of each layer


@EXPORTERS
@pytest.mark.parametrize("kind", KINDS)
def test_head_units_cover_q_k_v_columns_and_output_rows(kind, dynamo):
    model, analysis = _analysed(kind, dynamo)
    heads = {g.id for g in analysis.prunable() if g.kind == "head"}
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    maps = [(key, m) for key, m in analysis.axis_maps.items()
            if key[0] in weights and any(s.group in heads for s in m.segments)]
    columns = [m for (name, axis), m in maps if axis == 1]  # Q, K, V projection weights [DIM, out]
    rows = [m for (name, axis), m in maps if axis == 0 and weights[name] == (DIM, DIM)]  # output projections
    assert sum(m.units for m in columns) == 3 * HEADS * LAYERS
    assert all(m.repeat == DIM // HEADS for m in columns + rows)
    assert len(rows) == LAYERS


@EXPORTERS
@pytest.mark.parametrize("kind", KINDS)
def test_num_heads_literals_are_edited(kind, dynamo):
    model, analysis = _analysed(kind, dynamo)
    heads = {g.id for g in analysis.prunable() if g.kind == "head"}
    cuts = {n.name for n in model.graph.node if n.op_type in ("Slice", "Split")}  # Q, K, V out of a fused QKV
    edited = [e for e in analysis.shape_edits if e.node not in cuts
              and any(s.group in heads for s in analysis.axis_maps[e.key].segments)]
    by_value = sorted(e.hi - e.lo for e in edited)
    splits = (1 if kind == "fused" else 3) * LAYERS  # targets [.., H*D] -> [.., H, D] (fused: [.., 3, H, D])
    expands = LAYERS if kind == "split" else 0  # the mask broadcast to every head
    assert by_value.count(HEADS) == splits + expands
    assert by_value.count(DIM) == LAYERS  # the merge back [.., H, D] -> [.., H*D]


@EXPORTERS
def test_a_relative_position_bias_shared_by_the_layers_lets_each_layer_keep_its_own_heads(dynamo):
    """MPNet (and T5) gather a [buckets, heads] table once and add it to every layer's scores: the heads froze
    ("operand ... is not per-channel"). Each layer now reads its own copy of the table, sliced with its heads."""
    from darp_onnx.rewrite import rewrite
    from tests.groups.harness import feeds_for, gated_onnx, run_gated_proxy, run_ort

    model, analysis = _analysed("relbias", dynamo)
    heads = [g for g in analysis.prunable() if g.kind == "head"]
    assert [g.size for g in heads] == [HEADS] * LAYERS
    masks = {g.id: np.ones(g.size, bool) for g in analysis.prunable()}
    masks[heads[0].id] = np.array([True, False, True, False])  # layers keep different heads
    masks[heads[1].id] = np.array([False, False, False, True])
    pruned = rewrite(model, analysis, masks)
    tables = sorted(tuple(t.dims) for t in pruned.graph.initializer if tuple(t.dims)[:1] == (BUCKETS,))
    assert tables == [(BUCKETS, 1), (BUCKETS, 2)]
    feeds = feeds_for(model, 0, {"batch": 2, "seq": SEQ, "s0": 2, "s1": SEQ})
    actual = run_ort(pruned, feeds)
    oracle = run_ort(gated_onnx(model, analysis, masks), feeds)
    for expected in (oracle, run_gated_proxy(model, analysis, masks, feeds)):
        for a, e in zip(actual, expected, strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_the_vit_sample_has_one_head_group_per_layer():
    from pathlib import Path

    from darp_onnx.load.io import load_model

    vit = Path(__file__).resolve().parents[2] / "sample_models" / "vit.onnx"
    analysis = analyse(ingest(load_model(vit)).model)
    assert [g.size for g in analysis.prunable() if g.kind == "head"] == [4, 4, 4, 4]


def test_batch_dims_named_afresh_by_broadcasting_still_find_the_residual_branch():
    """Shape inference names the batch of `scores + mask` afresh (two symbols broadcast together); the
    block's output then seems to differ in shape from its input unless the names are unified."""
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(5)
    x = b.input("x", ["N", 3, 8])
    hidden = b.op("Add", b.op("MatMul", x, b.weight(8, 8)), b.input("bias", ["M", 1, 8]))
    y = b.op("Add", x, b.op("MatMul", b.op("Relu", hidden), b.weight(8, 8)))
    model = b.build(b.op("MatMul", y, b.weight(8, 2)))
    analysis = analyse(model)
    assert [br.add_node for br in analysis.branches] == [model.graph.node[-2].name]


def test_chunk_bounds_computed_from_the_channel_count_become_constants():
    """torch's TorchScript exporter writes qkv.chunk(3, -1) as Slices whose bounds are computed from the
    channel count at run time ((C + 2) // 3 * k); they are rewritten as constants of the kept sizes."""
    model, analysis = _analysed("sdpa", False)
    slices = {n.name for n in model.graph.node if n.op_type == "Slice"}
    computed = [e for e in analysis.shape_edits if e.node in slices and e.base]
    assert len(computed) == 5 * LAYERS  # every start and end of the three chunks but the first start (0)
    assert sorted({e.hi for e in computed}) == [DIM, 2 * DIM, 3 * DIM]


@pytest.mark.parametrize("domain", ["", "com.microsoft"])
def test_a_fused_attention_op_freezes_its_projection_with_a_reason(domain):
    from onnx import helper

    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(6, opset=23)
    qkv = b.op("MatMul", b.input("x", ["N", 4, 8]), b.weight(8, 24))
    q, k, v = b.op("Split", qkv, b.const(np.array([8, 8, 8], dtype=np.int64)), axis=2, outputs=3)
    b.nodes.append(helper.make_node("Attention", [q, k, v], ["ctx"], name="attention", domain=domain,
                                    **({"num_heads": 2} if domain else {"q_num_heads": 2, "kv_num_heads": 2})))
    model = b.build(b.op("MatMul", "ctx", b.weight(8, 3))) if not domain else _unchecked(b)
    analysis = analyse(model)
    frozen = [g.frozen for g in analysis.groups if g.frozen and "fused attention op Attention" in g.frozen]
    assert frozen and not any(g.kind == "head" for g in analysis.groups)


def _unchecked(b) -> onnx.ModelProto:
    """A com.microsoft node: onnx's strict shape inference does not know it."""
    from onnx import TensorProto, helper

    out = b.op("MatMul", "ctx", b.weight(8, 3))
    graph = helper.make_graph(b.nodes, "fused", b.inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset),
                                                    helper.make_opsetid("com.microsoft", 1)])
    return onnx.shape_inference.infer_shapes(model)


def test_inspect_lists_the_heads_as_units_of_their_kind():
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from darp_onnx.cli.app import app

    vit = Path(__file__).resolve().parents[2] / "sample_models" / "vit.onnx"
    result = CliRunner().invoke(app, ["inspect", str(vit), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    heads = [g for g in report["groups"] if g["kind"] == "head"]
    assert [g["size"] for g in heads] == [4, 4, 4, 4] and not any(g["frozen"] for g in heads)
    assert report["prunable_heads"] == 16


@EXPORTERS
def test_the_hidden_size_is_frozen_with_the_layer_norm_reason(dynamo):
    _, analysis = _analysed("split", dynamo)  # post-LN: each block's residual sum goes through a LayerNorm
    hidden = [g for g in analysis.groups if g.kind == "channel" and g.size == DIM]
    assert len(hidden) == 2 * LAYERS and "'x' is a graph input" in hidden[0].frozen
    assert all("LayerNormalization" in g.frozen and "hidden size not pruned" in g.frozen for g in hidden[1:])


@EXPORTERS
def test_sizes_read_from_the_hidden_states_let_every_layer_prune_its_heads(dynamo):
    """`view(b, t, c)` with c read at run time from the hidden states (rxnfp's BERT with a dynamic batch):
    its heads froze ('target element 2 does not follow the channel count'); c, fixed by the recorded shapes,
    is folded into a constant the rewrite edits (`load.static_dims`)."""
    _, analysis = _analysed("shaped", dynamo)
    assert [g.size for g in analysis.prunable() if g.kind == "head"] == [HEADS] * LAYERS
