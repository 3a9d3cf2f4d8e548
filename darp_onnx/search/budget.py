"""Budgets, feasibility and the extraction of discrete masks that meet a budget exactly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from darp_onnx.cost import CostModel
from darp_onnx.cost.metrics import Metric, budget_target, get_metric
from darp_onnx.errors import OptionError
from darp_onnx.groups import ChannelAnalysis


@dataclass(frozen=True)
class Budget:
    """Keep at most `limit` of `metric` (a name in `cost.metrics.METRICS`), measured by `measure`,
    that metric bound to the model."""

    metric: str
    limit: float
    measure: Metric = field(compare=False, repr=False)

    @property
    def option(self) -> str:
        """The parameter that set this budget (`target_flops`), for messages."""
        return self.measure.option

    @property
    def full(self) -> float:
        return self.measure.full

    @property
    def fraction(self) -> float:
        return self.limit / max(self.full, 1e-12)

    def cost(self, masks: Mapping[int, np.ndarray]) -> float:
        return self.measure.cost(masks)

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """The cost in expectation over keep probabilities (what the search penalises)."""
        return self.measure.expected(probs)

    def describe(self, value: float) -> str:
        return self.measure.describe(value)


def make_budget(cost_model: CostModel, *, metric: str | None = None, value: float | None = None,
                target_flops: float | None = None, target_params: float | None = None,
                target_latency: float | None = None, latency_model: Any = None) -> Budget:
    """A budget of `value` of `metric` (or of the one `target_*` given): a fraction in (0, 1] or an
    absolute amount (> 1) where the metric allows it; checked against what the frozen parts cost.
    Metrics that need layer timings (latency) need `latency_model`."""
    if metric is None:
        chosen = budget_target(target_flops=target_flops, target_params=target_params, target_latency=target_latency)
        if chosen is None:
            raise OptionError("target_flops", "give a budget: {option:target_flops}, {option:target_params} or "
                                              "{option:target_latency}")
        metric, value = chosen
    kind = get_metric(metric)
    kind.check_target(value)
    measure = kind(cost_model, latency_model)
    if value > max(measure.full, 1) and not kind.fraction_only:
        raise OptionError(kind.option, f"{{option}} {value:g}: more than the model's {measure.full:,.0f} "
                                       f"{kind.unit or metric}, so nothing would be pruned; give a fraction in "
                                       f"(0, 1] or an amount up to {measure.full:,.0f}")
    limit = float(value) * measure.full if (value <= 1 or kind.fraction_only) else float(value)
    budget = Budget(metric, limit, measure)
    check_feasible(budget, cost_model)
    return budget


def check_feasible(budget: Budget, cost_model: CostModel) -> None:
    smallest = budget.cost(cost_model.smallest_masks())
    if budget.limit < smallest:
        full = budget.full
        raise OptionError(
            budget.option,
            f"{{option}}: a budget of {budget.describe(budget.limit)} "
            f"({budget.limit / full:.1%}) is below what the frozen parts already cost; the smallest "
            f"reachable is {budget.describe(smallest)} ({smallest / full:.1%}), ask for at least that"
            + _nothing_prunable(cost_model, smallest >= full)
        )


def _nothing_prunable(cost_model: CostModel, nothing: bool) -> str:
    """Why, where no group can be pruned (a GRU encoder: its hidden size is frozen)."""
    return nothing_prunable(cost_model.analysis) if nothing else ""


def nothing_prunable(analysis: ChannelAnalysis, at: str = "") -> str:
    """'; nothing in this model is prunable{at} (N frozen groups, e.g. the first reason; ...)'."""
    reasons = [g.frozen for g in analysis.groups if g.frozen]
    if not reasons:
        return f"; nothing in this model is prunable{at}"
    first = reasons[0] if len(reasons[0]) <= 160 else reasons[0][:157] + "..."
    return (f"; nothing in this model is prunable{at} ({len(reasons)} frozen group{'s' if len(reasons) > 1 else ''}, "
            f"e.g. {first}; `darp-onnx inspect MODEL` lists them)")


def extract_masks(
    scores: Mapping[int, np.ndarray], cost_model: CostModel, budget: Budget, *, channel_multiple: int = 1
) -> dict[int, np.ndarray]:
    """Drop units in order of increasing score until the exact cost fits the budget.

    Each group keeps at least `min_keep` units (its best-scored ones). With `channel_multiple` M > 1,
    a channel group keeps a multiple of M units (or all of them): inference kernels (onnxruntime's
    blocked convolutions, GPU tensor cores) run much faster on such widths than on odd ones. Removing
    more units never raises the cost, so the shortest prefix of the ranking that meets the budget is
    found by bisection."""
    if channel_multiple < 1:
        raise OptionError("channel_multiple", "{option} must be at least 1")
    analysis = cost_model.analysis
    groups = analysis.prunable()
    ranked: dict[int, np.ndarray] = {}  # per group: unit indices, best score first
    best_first: dict[int, np.ndarray] = {}  # per group: the scores in that order
    order: list[tuple[float, int, int]] = []  # (score, group, unit), worst first, protected units left out
    for group in groups:
        s = np.asarray(scores[group.id], dtype=np.float64)
        s = np.where(np.isnan(s), np.inf, s)  # NaN: no score of its own, ranks last
        ranked[group.id] = np.argsort(-s, kind="stable")
        best_first[group.id] = s[ranked[group.id]]
        protected = set(ranked[group.id][: group.min_keep].tolist())
        order.extend((float(s[u]), group.id, u) for u in range(group.size) if u not in protected)
    order.sort(key=lambda item: (item[0], item[1], item[2]))
    base = analysis.all_kept()

    def masks_without(k: int) -> dict[int, np.ndarray]:
        removed: dict[int, int] = {}
        for _, g, _ in order[:k]:
            removed[g] = removed.get(g, 0) + 1
        trial = {g: m.copy() for g, m in base.items()}
        for group in groups:
            keep = group.size - removed.get(group.id, 0)
            multiple = group.unit_multiple(channel_multiple)
            if multiple > 1 and keep > 0:
                keep = min(group.size, -(-keep // multiple) * multiple)
            mask = np.zeros(group.size, dtype=bool)
            mask[ranked[group.id][:keep]] = True
            trial[group.id] = mask
        return trial

    check_feasible(budget, cost_model)
    smallest = masks_without(len(order))
    if budget.cost(smallest) > budget.limit:
        reachable = budget.cost(smallest)
        raise OptionError(
            budget.option,
            f"{{option}}: with {{option:channel_multiple}} {channel_multiple} the smallest reachable is "
            f"{budget.describe(reachable)} ({reachable / budget.full:.1%}); ask for at least that or "
            "lower the multiple"
        )
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if budget.cost(masks_without(mid)) <= budget.limit:
            hi = mid
        else:
            lo = mid + 1
    masks = masks_without(lo)
    if channel_multiple == 1:
        masks = _fill(masks, [(g, u) for _, g, u in reversed(order[:lo])], cost_model, budget)
    else:
        masks = _fill_aligned(masks, groups, ranked, best_first, channel_multiple, cost_model, budget)
    return masks


def _fill_aligned(masks: dict[int, np.ndarray], groups, ranked, best_first, multiple: int, cost_model: CostModel,
                  budget: Budget, max_passes: int = 8) -> dict[int, np.ndarray]:
    """The slack pass at aligned widths: put back whole blocks of `multiple` channels (or a dropped
    branch), best mean score first, while the budget still holds; rounding widths up to the multiple
    otherwise leaves the cost well under the budget."""
    for _ in range(max_passes):
        blocks = []
        for group in groups:
            kept = int(masks[group.id].sum())
            if kept >= group.size:
                continue
            unit_multiple = group.unit_multiple(multiple)
            step = min(group.size, (kept // unit_multiple + 1) * unit_multiple) - kept
            blocks.append((float(np.mean(best_first[group.id][kept : kept + step])), group.id, kept + step))
        changed = False
        for _, gid, keep in sorted(blocks, key=lambda b: (-b[0], b[1])):
            trial = np.zeros_like(masks[gid])
            trial[ranked[gid][:keep]] = True
            previous, masks[gid] = masks[gid], trial
            if budget.cost(masks) > budget.limit:
                masks[gid] = previous
            else:
                changed = True
        if not changed:
            break
    return masks


def _fill(masks: dict[int, np.ndarray], candidates: list[tuple[int, int]], cost_model: CostModel,
          budget: Budget, max_tries: int = 4000) -> dict[int, np.ndarray]:
    """Put dropped units back, best-scored first, while the budget still holds. One costly unit
    (a residual branch) can take the cost well under the budget when it is dropped last; this uses
    that slack for the next units in the ranking instead."""
    for g, u in candidates[:max_tries]:
        masks[g][u] = True
        if budget.cost(masks) > budget.limit:
            masks[g][u] = False
    return masks
