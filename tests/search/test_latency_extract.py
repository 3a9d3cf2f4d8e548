"""The latency table and the latency-aware extraction, with a deterministic stand-in for the timer.

The stand-in times a single-node model as (weight elements x output pixels), which is bilinear in the
kept input and output channels, so the table's bilinear interpolation must reproduce it exactly at
every width, not only on the grid; real onnxruntime timings are only smoke-tested (positive, finite).
"""

from __future__ import annotations

from math import prod
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from darp_onnx.cost import CostModel
from darp_onnx.cost.latency import LatencyModel, compare_latencies, grid, interpolate
from darp_onnx.errors import BadInputError
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.search import BASELINES, extract_masks, make_budget
from darp_onnx.search.latency_extract import _branch_contents, extract_masks_by_latency

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
PROBE_MS = 1.0  # the stand-in's time for the element-wise probe
SHAPES = {"input": (1, 1, 32, 32)}


def fake_timer(slow: dict[tuple[int, ...], float] | None = None):
    """Milliseconds = weight elements x input pixels / 1e6 (x a factor for weight shapes in `slow`); a
    MatMul of two activations: its MACs / 1e6."""
    def timer(model: onnx.ModelProto, feeds) -> float:
        if set(feeds) == {"a", "b"}:  # a MatMul of two activations (attention at some head count): its MACs
            return prod(feeds["a"].shape) * feeds["b"].shape[-1] / 1e6
        weights = [t for t in model.graph.initializer if t.name == "w"]
        if not weights:
            return PROBE_MS
        w = tuple(weights[0].dims)
        x = feeds["x"].shape
        pixels = prod(x[2:]) if len(w) > 2 else prod(x[:-1])  # conv: spatial size; matmul/gemm: rows
        factor = (slow or {}).get(w[2:], 1.0)
        return prod(w) * pixels / 1e6 * factor
    return timer


def prepared(name: str):
    """A sample model, its channel analysis and cost model at 1x1x32x32."""
    model = load_model(SAMPLES / f"{name}.onnx")
    analysis = analyse(model)
    return model, analysis, CostModel(model, analysis, SHAPES)


@pytest.fixture(scope="module", params=["resnet", "mobilenetv3", "yolov8", "vit"])
def sample(request):
    return prepared(request.param)


def test_grid_has_both_ends_and_rounded_quarters():
    assert grid(64, 1, 1) == (1, 16, 32, 48, 64)
    assert grid(64, 1, 16) == (16, 32, 48, 64)  # nothing below the multiple is ever chosen
    assert grid(24, 1, 16) == (16, 24)
    assert grid(16, 16, 1) == (16,)


def test_interpolation_is_exact_on_the_grid_and_linear_between():
    xs, ys = (2, 4), (10, 20, 30)
    table = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert interpolate(xs, ys, table, 4, 20) == 4.0
    assert interpolate(xs, ys, table, 3, 25) == pytest.approx((2.5 + 5.0) / 2)
    assert interpolate(xs, ys, table, 1, 10) == pytest.approx(0.5)  # linear towards zero below the grid


def test_table_reproduces_a_bilinear_timer_at_any_width(sample):
    model, analysis, cost = sample
    latency = LatencyModel(model, cost, timer=fake_timer())
    assert latency.tables and latency.ms_per_element == pytest.approx(PROBE_MS / (64 * 56 * 56))
    depthwise = {n.name for n in model.graph.node for a in n.attribute if a.name == "group" and a.i > 1}
    weights = {i.name for i in model.graph.initializer}
    attention = {n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in weights}
    rng = np.random.default_rng(0)
    for _ in range(5):
        masks = analysis.all_kept()
        for group in analysis.prunable():
            if group.kind != "branch":
                keep = rng.random(group.size) < 0.6
                keep[rng.integers(group.size)] = True
                masks[group.id] = keep
        for table in latency.tables:
            cin, cout = table.cin.value(masks), table.cout.value(masks)
            full_in, full_out = table.cin_grid[-1], table.cout_grid[-1]
            # weight elements scale with both counts, or with the one channel count of a depthwise conv
            ratio = cout / full_out if table.node in depthwise else (cin * cout) / (full_in * full_out)
            ratio = cin / full_in if table.node in attention else ratio  # attention: MACs scale with the heads
            assert table.value(masks) == pytest.approx(table.ms[-1, -1] * ratio, rel=1e-9)


def test_dropped_branch_costs_nothing():
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer())
    branch = analysis.branches[0]
    masks = analysis.all_kept()
    masks[branch.group] = np.zeros(1, dtype=bool)
    inside = [t for t in latency.tables if t.node in branch.nodes]
    assert inside and all(t.value(masks) == 0.0 for t in inside)
    assert latency.estimate(masks) < latency.full_ms


def test_branch_contents_are_the_channels_inside_each_branch():
    _, analysis, cost = prepared("resnet")
    contents = _branch_contents(cost)
    assert set(contents) == {b.group for b in analysis.branches}
    held = [g for gs in contents.values() for g in gs]
    assert len(held) == len(set(held))  # a group lives in one branch at most
    assert set(held) <= {g.id for g in analysis.prunable() if g.kind == "channel"}
    # the residual streams (consumed by the Add nodes outside the branches) belong to no branch
    streams = {seg.group for b in analysis.branches for seg in analysis.axis_maps[(b.skip_input, 1)].segments}
    assert streams and not streams & set(held)


@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("fraction", [0.75, 0.5, 0.3])
def test_every_candidate_meets_the_budget_at_aligned_widths(sample, multiple, fraction):
    model, analysis, cost = sample
    latency = LatencyModel(model, cost, timer=fake_timer(), channel_multiple=multiple)
    budget = make_budget(cost, target_flops=fraction)
    result = extract_masks_by_latency(BASELINES["l1"](model, analysis, 0), cost, latency, budget,
                                      channel_multiple=multiple)
    assert cost.macs(result.masks) <= budget.limit
    assert set(result.candidates) == {"rank", "alpha=0", "alpha=0.5", "alpha=1"}
    assert result.latency_ms == pytest.approx(latency.estimate(result.masks)) and not result.measured
    for group in analysis.prunable():
        kept = int(result.masks[group.id].sum())
        assert kept >= group.min_keep
        if multiple > 1 and group.kind == "channel":
            assert kept == group.size or kept % multiple == 0


def test_slow_layers_lose_channels_first():
    """Make the 3x3 convolutions 50x slower per MAC: at the same MACs budget, the chosen masks then
    remove a larger share of the (now 3x3-dominated) time than with uniform speed per MAC."""
    model, analysis, cost = prepared("mobilenetv3")
    budget = make_budget(cost, target_flops=0.8)
    scores = {g.id: np.ones(g.size) for g in analysis.prunable()}
    times = {}
    for slow in ({}, {(3, 3): 50.0}):
        latency = LatencyModel(model, cost, timer=fake_timer(slow))
        result = extract_masks_by_latency(scores, cost, latency, budget)
        times[bool(slow)] = latency.estimate(result.masks), latency.full_ms
    assert times[True][0] / times[True][1] < times[False][0] / times[False][1]


def test_infinite_importance_keeps_a_branch_nan_lets_it_go():
    model, analysis, cost = prepared("resnet")
    first = analysis.branches[0]
    # the first branch's convolutions are made very slow: dropping it is the fastest way to the budget
    latency = LatencyModel(model, cost, timer=fake_timer())
    for table in latency.tables:
        if table.node in first.nodes:
            object.__setattr__(table, "ms", table.ms * 1000)
    latency.full_ms = latency.estimate(analysis.all_kept())
    budget = make_budget(cost, target_flops=0.8)
    scores = BASELINES["l1"](model, analysis, 0)
    assert np.isnan(scores[first.group]).all()
    dropped = extract_masks_by_latency(scores, cost, latency, budget)
    assert not dropped.masks[first.group][0]
    scores = {g: (np.full(len(s), np.inf) if analysis.groups[g].kind == "branch" else s) for g, s in scores.items()}
    kept = extract_masks_by_latency(scores, cost, latency, budget)
    assert all(kept.masks[b.group][0] for b in analysis.branches)


def test_measured_latency_decides_between_candidates():
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer())
    budget = make_budget(cost, target_flops=0.5)
    scores = BASELINES["l1"](model, analysis, 0)
    seen = []

    def measure(candidates):
        seen.append(len(candidates))
        return [10.0, 1.0] + [9.0] * (len(candidates) - 2)  # full model, then 'rank' is by far the fastest

    result = extract_masks_by_latency(scores, cost, latency, budget, measure=measure)
    assert seen == [5] and result.measured and result.chosen == "rank" and result.latency_ms == 1.0


def test_unreachable_budget_with_a_coarse_multiple_is_a_clear_error():
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer(), channel_multiple=64)
    budget = make_budget(cost, target_flops=0.05)
    with pytest.raises(BadInputError, match="channel_multiple 64.*smallest reachable"):
        extract_masks_by_latency(BASELINES["l1"](model, analysis, 0), cost, latency, budget, channel_multiple=64)


def test_real_onnxruntime_timings_are_positive_and_finite():
    model, analysis, cost = prepared("mobilenetv3")
    latency = LatencyModel(model, cost, threads=1, channel_multiple=8)
    assert latency.measurements > 0 and latency.ms_per_element > 0
    assert all(np.isfinite(t.ms).all() and (t.ms > 0).all() for t in latency.tables)
    feeds = {"input": np.zeros(SHAPES["input"], np.float32)}
    times = compare_latencies([model, model], feeds, threads=1, runs=3)
    assert len(times) == 2 and all(t > 0 for t in times)


def test_expected_latency_equals_the_estimate_on_hard_masks_and_has_a_gradient():
    model, analysis, cost = prepared("mobilenetv3")
    latency = LatencyModel(model, cost, timer=fake_timer())
    rng = np.random.default_rng(1)
    masks = analysis.all_kept()
    for group in analysis.prunable():
        keep = rng.random(group.size) < 0.5
        keep[0] = True
        masks[group.id] = keep
    probs = {g: torch.tensor(m.astype(np.float64), requires_grad=True) for g, m in masks.items()}
    expected = latency.expected(probs)
    assert float(expected.detach()) == pytest.approx(latency.estimate(masks), rel=1e-9)
    expected.backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in probs.values())


def test_latency_budget_is_a_fraction_of_the_estimate_and_is_met():
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer())
    budget = make_budget(cost, target_latency=0.5, latency_model=latency)
    assert budget.metric == "latency" and budget.limit == pytest.approx(0.5 * latency.full_ms)
    scores = BASELINES["l1"](model, analysis, 0)
    result = extract_masks_by_latency(scores, cost, latency, budget, channel_multiple=4)
    assert set(result.candidates) == {"rank", "alpha=1"}
    assert latency.estimate(result.masks) <= budget.limit
    assert latency.estimate(extract_masks(scores, cost, budget)) <= budget.limit


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_latency": 1.5}, "fraction of the model's latency"),
    ({"target_latency": 0.0}, "fraction of the model's latency"),
    ({"target_latency": 0.5, "target_flops": 0.5}, "exactly one budget"),
    ({"target_latency": 1e-6}, "smallest reachable is"),
])
def test_bad_latency_budgets(kwargs, message):
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer())
    with pytest.raises(BadInputError, match=message):
        make_budget(cost, latency_model=latency, **kwargs)


def test_a_node_that_cannot_be_timed_alone_is_priced_per_element():
    model, analysis, cost = prepared("resnet")
    timer = fake_timer()
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")

    def failing(single, feeds):
        weights = [t for t in single.graph.initializer if t.name == "w"]
        if weights and tuple(weights[0].dims[1:]) == tuple(
                next(t.dims for t in model.graph.initializer if t.name == first_conv.input[1])[1:]):
            raise RuntimeError("onnxruntime refused it")
        return timer(single, feeds)

    latency = LatencyModel(model, cost, timer=failing)
    assert first_conv.name in latency.untimed
    assert first_conv.name not in {t.node for t in latency.tables}
    assert first_conv.name in {e.node for e in latency.elements}


def test_latency_weight_trades_importance_for_speed():
    model, analysis, cost = prepared("resnet")
    latency = LatencyModel(model, cost, timer=fake_timer())
    budget = make_budget(cost, target_flops=0.5)
    scores = BASELINES["l1"](model, analysis, 0)

    def measure(candidates):  # the full model, then candidates that get faster as they lose importance
        return [10.0, *(8.0 - i for i in range(len(candidates) - 1))]

    slow = extract_masks_by_latency(scores, cost, latency, budget, measure=measure, latency_weight=0.0)
    fast = extract_masks_by_latency(scores, cost, latency, budget, measure=measure, latency_weight=1000.0)
    assert fast.latency_ms == min(c["ms"] for c in fast.candidates.values())
    lost = {k: c["importance_lost"] for k, c in slow.candidates.items()}
    assert slow.candidates[slow.chosen]["importance_lost"] == min(lost.values())
    with pytest.raises(BadInputError, match="latency_weight"):
        extract_masks_by_latency(scores, cost, latency, budget, latency_weight=-1.0)
