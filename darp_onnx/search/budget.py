"""Budgets, feasibility and the extraction of discrete masks that meet a budget exactly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from darp_onnx.cost import CostModel
from darp_onnx.errors import BadInputError

METRICS = ("macs", "params")
_OPTION = {"macs": "--target-flops", "params": "--target-params"}


@dataclass(frozen=True)
class Budget:
    """Keep at most `limit` of `metric` (an absolute count)."""

    metric: str
    limit: float

    def cost(self, cost_model: CostModel, masks: Mapping[int, np.ndarray]) -> int:
        return cost_model.macs(masks) if self.metric == "macs" else cost_model.params(masks)

    def full(self, cost_model: CostModel) -> int:
        return cost_model.full_macs if self.metric == "macs" else cost_model.full_params

    def fraction(self, cost_model: CostModel) -> float:
        return self.limit / max(self.full(cost_model), 1)


def make_budget(cost_model: CostModel, *, target_flops: float | None = None,
                target_params: float | None = None) -> Budget:
    """A budget from a fraction in (0, 1] or an absolute count (> 1) of MACs or parameters."""
    if (target_flops is None) == (target_params is None):
        raise BadInputError("give exactly one budget: --target-flops or --target-params")
    metric, value = ("macs", target_flops) if target_flops is not None else ("params", target_params)
    if value is None or value <= 0:
        raise BadInputError(f"{_OPTION[metric]} must be positive (a fraction like 0.5 or an absolute count)")
    full = cost_model.full_macs if metric == "macs" else cost_model.full_params
    budget = Budget(metric, float(value) * full if value <= 1 else float(value))
    check_feasible(budget, cost_model)
    return budget


def check_feasible(budget: Budget, cost_model: CostModel) -> None:
    smallest = budget.cost(cost_model, cost_model.smallest_masks())
    if budget.limit < smallest:
        full = budget.full(cost_model)
        raise BadInputError(
            f"{_OPTION[budget.metric]}: a budget of {budget.limit:,.0f} {budget.metric} "
            f"({budget.limit / full:.1%}) is below what the frozen parts already cost; the smallest "
            f"reachable is {smallest:,} ({smallest / full:.1%}), ask for at least that"
        )


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
        raise BadInputError("--channel-multiple must be at least 1")
    analysis = cost_model.analysis
    groups = analysis.prunable()
    ranked: dict[int, np.ndarray] = {}  # per group: unit indices, best score first
    order: list[tuple[float, int, int]] = []  # (score, group, unit), worst first, protected units left out
    for group in groups:
        s = np.asarray(scores[group.id], dtype=np.float64)
        s = np.where(np.isnan(s), np.inf, s)  # NaN: no score of its own, ranks last
        ranked[group.id] = np.argsort(-s, kind="stable")
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
            if channel_multiple > 1 and group.kind == "channel" and keep > 0:
                keep = min(group.size, -(-keep // channel_multiple) * channel_multiple)
            mask = np.zeros(group.size, dtype=bool)
            mask[ranked[group.id][:keep]] = True
            trial[group.id] = mask
        return trial

    check_feasible(budget, cost_model)
    smallest = masks_without(len(order))
    if budget.cost(cost_model, smallest) > budget.limit:
        reachable = budget.cost(cost_model, smallest)
        raise BadInputError(
            f"{_OPTION[budget.metric]}: with --channel-multiple {channel_multiple} the smallest reachable is "
            f"{reachable:,} ({reachable / budget.full(cost_model):.1%}); ask for at least that or lower the multiple"
        )
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if budget.cost(cost_model, masks_without(mid)) <= budget.limit:
            hi = mid
        else:
            lo = mid + 1
    masks = masks_without(lo)
    if channel_multiple == 1:
        masks = _fill(masks, [(g, u) for _, g, u in reversed(order[:lo])], cost_model, budget)
    return masks


def _fill(masks: dict[int, np.ndarray], candidates: list[tuple[int, int]], cost_model: CostModel,
          budget: Budget, max_tries: int = 4000) -> dict[int, np.ndarray]:
    """Put dropped units back, best-scored first, while the budget still holds. One costly unit
    (a residual branch) can take the cost well under the budget when it is dropped last; this uses
    that slack for the next units in the ranking instead."""
    for g, u in candidates[:max_tries]:
        masks[g][u] = True
        if budget.cost(cost_model, masks) > budget.limit:
            masks[g][u] = False
    return masks
