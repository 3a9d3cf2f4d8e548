"""Pruning heads, FFN neurons and whole attention/FFN blocks of transformer encoders exported by both torch
exporters: the rewritten ONNX equals the gated model (ONNX oracle and gated proxy), keeps its dynamic
batch and sequence axes, and costs what the cost model predicts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from darp_onnx.groups import analyse
from darp_onnx.load.ingest import ingest
from darp_onnx.rewrite import rewrite
from tests.groups.harness import ATOL, RTOL, gated_onnx, random_masks, run_gated_proxy, run_ort
from tests.groups.models_attention import DIM, EXPORTERS, loaded
from tests.groups.models_attention import KINDS as ENCODERS

KINDS = pytest.mark.parametrize("kind", ENCODERS)


def _feeds(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((batch, seq)) < 0.8).astype(np.float32)
    mask[:, 0] = 1
    return {"x": rng.standard_normal((batch, seq, DIM)).astype(np.float32), "mask": mask}


def _model(kind: str, dynamo: bool) -> onnx.ModelProto:
    return ingest(loaded(kind, dynamo)).model


def _assert_pruned_equals_gated(model, analysis, masks, feeds) -> onnx.ModelProto:
    pruned = rewrite(model, analysis, masks)
    actual = run_ort(pruned, feeds)
    for expected in (run_ort(gated_onnx(model, analysis, masks), feeds),
                     run_gated_proxy(model, analysis, masks, feeds)):
        for a, e in zip(actual, expected, strict=True):
            np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    return pruned


@EXPORTERS
@KINDS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_head_and_neuron_masks_match_the_gated_model(kind, dynamo, seed):
    model = _model(kind, dynamo)
    analysis = analyse(model)
    masks = random_masks(analysis, np.random.default_rng(seed), drop_branches=False)
    assert any(not masks[g.id].all() for g in analysis.prunable() if g.kind == "head")
    pruned = _assert_pruned_equals_gated(model, analysis, masks, _feeds(2, 5, seed))
    for batch, seq in ((1, 3), (3, 7)):  # dynamic axes survive the rewritten num_heads constants
        assert run_ort(pruned, _feeds(batch, seq, seed))[0].shape == (batch, 3)


@EXPORTERS
@KINDS
def test_dropped_blocks_and_pruned_heads_match_the_gated_model(kind, dynamo):
    model = _model(kind, dynamo)
    analysis = analyse(model)
    masks = random_masks(analysis, np.random.default_rng(7), drop_branches=False)
    attention, ffn = analysis.branches[0], analysis.branches[-1]
    masks[attention.group] = np.array([False])  # layer 0's attention block
    masks[ffn.group] = np.array([False])  # the last FFN block
    pruned = _assert_pruned_equals_gated(model, analysis, masks, _feeds(2, 6, 3))
    assert len(pruned.graph.node) < len(model.graph.node)


@EXPORTERS
@KINDS
def test_the_rewritten_encoder_costs_what_the_cost_model_predicts(kind, dynamo):
    from darp_onnx.cost import CostModel, count_graph

    shapes = {"x": (1, 8, DIM), "mask": (1, 8)}
    ingested = ingest(loaded(kind, dynamo), shapes)
    model = ingested.model
    analysis = analyse(model)
    cost = CostModel(model, analysis, shapes, observed=ingested.shapes)
    assert cost.full_macs == count_graph(model, shapes).macs
    masks = random_masks(analysis, np.random.default_rng(5), drop_branches=False)
    counted = count_graph(rewrite(model, analysis, masks), shapes)
    assert (counted.macs, counted.params) == (cost.macs(masks), cost.params(masks))
    assert counted.macs < cost.full_macs


@EXPORTERS
def test_heads_merged_back_to_a_size_read_at_run_time_prune_and_keep_the_dynamic_axes(dynamo):
    model = _model("shaped", dynamo)
    analysis = analyse(model)
    masks = random_masks(analysis, np.random.default_rng(3), drop_branches=False)
    assert any(not masks[g.id].all() for g in analysis.prunable() if g.kind == "head")
    pruned = _assert_pruned_equals_gated(model, analysis, masks, _feeds(2, 5, 3))
    for batch, seq in ((1, 3), (3, 7)):
        assert run_ort(pruned, _feeds(batch, seq, 3))[0].shape == (batch, 3)
