"""The latency table times attention (Q K^T, attention x V) at kept head counts."""

from __future__ import annotations

from math import prod
from pathlib import Path

import numpy as np
import onnx

from darp_onnx.cost import CostModel
from darp_onnx.cost.latency import LatencyModel
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model

VIT = Path(__file__).resolve().parents[1] / "sample_models" / "vit.onnx"


def attention_timer(model: onnx.ModelProto, feeds) -> float:
    """A stand-in: a lone two-input MatMul costs its MACs / 1e6 ms, anything else 1 ms."""
    if set(feeds) == {"a", "b"}:
        return prod(feeds["a"].shape) * feeds["b"].shape[-1] / 1e6
    return 1.0


def test_attention_matmuls_are_timed_at_kept_head_counts():
    model = load_model(VIT)
    analysis = analyse(model)
    cost = CostModel(model, analysis, {"input": (1, 1, 32, 32)})
    latency = LatencyModel(model, cost, timer=attention_timer)
    matmuls = {n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in
               {i.name for i in model.graph.initializer}}
    attention = [t for t in latency.tables if t.node in matmuls]
    assert len(attention) == 8 and all(t.cin_grid == (1, 2, 3, 4) for t in attention)
    heads = [g for g in analysis.prunable() if g.kind == "head"]
    masks = analysis.all_kept()
    masks[heads[0].id] = np.array([True, False, True, False])
    node_macs = cost.node_macs(masks)
    for table in attention:  # the stand-in is linear in the heads: the table reads it exactly
        assert table.value(masks) == node_macs[table.node] / 1e6
    assert latency.estimate(masks) < latency.full_ms
