"""Latency-aware extraction: meet the budget while removing what costs the most time.

The plain extraction (`budget.extract_masks`) drops units in score order and lets the budget decide
how many; which layers lose channels follows from the scores alone, and MACs are a poor guide to
time (see `cost.latency`). Here candidate steps (the next `channel_multiple` channels of a group, or
a whole residual branch) are taken greedily, least importance lost per resource saved first, where the
resource blends the budget's metric and the measured latency (`LatencyModel`), with weights
alpha = 0, 0.5, 1; a slack pass then puts back what still fits. Those three and the plain extraction
all meet the budget; the one with the least (importance lost / total importance + w x latency / full
latency) is kept (w: `latency_weight`, 1 by default; higher values favour speed over importance).
Latency there is measured on the rewritten candidates when a `measure` function is given (the
pipeline does; the table's estimate ignores onnxruntime's fusions and layout reorders) and
estimated otherwise. This is the knapsack heuristic of hardware-aware pruning (e.g. HALP,
Shen et al. 2022), with a MACs or parameter budget as well as a latency one (for a latency budget the
blend is moot and one greedy run, alpha = 1, is the only other candidate).

A branch is worth its own importance plus that of the channels inside it; a branch with no importance
of its own (NaN: the baselines score channels only) is worth only what it holds, and one with an
infinite importance is never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from darp_onnx.cost import CostModel
from darp_onnx.cost.latency import LatencyModel, term_groups
from darp_onnx.errors import BadInputError, OptionError
from darp_onnx.search.budget import Budget, check_feasible, extract_masks

_EPS = 1e-12
ALPHAS = (0.0, 0.5, 1.0)


@dataclass
class LatencyExtraction:
    masks: dict[int, np.ndarray]
    chosen: str
    latency_ms: float  # of the chosen candidate, measured or estimated
    candidates: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> ms, importance lost
    measured: bool = False


Masks = dict[int, np.ndarray]
MeasureFn = Callable[[Sequence[Masks]], list[float]]  # masks -> milliseconds, one per entry


def extract_masks_by_latency(importance: Mapping[int, np.ndarray], cost_model: CostModel,
                             latency: LatencyModel, budget: Budget, *, channel_multiple: int = 1,
                             measure: MeasureFn | None = None, latency_weight: float = 1.0) -> LatencyExtraction:
    if not latency_weight >= 0:
        raise OptionError("latency_weight", f"{{option}} {latency_weight}: give a number >= 0 (1: importance and "
                                            "time alike)")
    check_feasible(budget, cost_model)
    candidates: dict[str, Masks] = {}
    failures: list[BadInputError] = []
    alphas = (1.0,) if budget.measure.needs_latency else ALPHAS  # the blend is moot for a latency budget
    for name in ("rank", *(f"alpha={a:g}" for a in alphas)):
        try:  # with a coarse multiple one strategy may reach the budget where another cannot
            candidates[name] = (extract_masks(importance, cost_model, budget, channel_multiple=channel_multiple)
                                if name == "rank" else
                                _greedy(importance, cost_model, latency, budget, channel_multiple,
                                        float(name.split("=")[1])))
        except BadInputError as exc:
            failures.append(exc)
    if not candidates:
        raise failures[0]
    groups, contents = [g.id for g in cost_model.analysis.prunable()], _branch_contents(cost_model)
    total = _kept_importance(importance, groups, contents, cost_model.analysis.all_kept())
    if measure is not None:
        full_ms, *times = measure([cost_model.analysis.all_kept(), *candidates.values()])
    else:
        full_ms, times = latency.full_ms, [latency.estimate(m) for m in candidates.values()]
    table, best, best_key = {}, "", None
    for (name, masks), ms in zip(candidates.items(), times, strict=True):
        lost = total - _kept_importance(importance, groups, contents, masks)
        table[name] = {"ms": ms, "importance_lost": lost}
        key = lost / max(total, _EPS) + latency_weight * ms / max(full_ms, _EPS)
        if best_key is None or key < best_key - 1e-12:
            best, best_key = name, key
    return LatencyExtraction(candidates[best], best, table[best]["ms"], table, measure is not None)


def _greedy(importance, cost_model: CostModel, latency: LatencyModel, budget: Budget, multiple: int,
            alpha: float) -> dict[int, np.ndarray]:
    state = _State(importance, cost_model, latency, multiple, budget, alpha)
    cost = budget.cost(state.masks)  # kept up to date from each step's exact change
    while cost > budget.limit:
        step = state.best_move(removing=True)
        if step is None:
            raise OptionError(
                budget.option,
                f"{{option}}: with {{option:channel_multiple}} {multiple} the smallest reachable is "
                f"{budget.describe(cost)} ({cost / budget.full:.1%}); ask for at least that or lower the multiple")
        move, saved = step
        state.apply(move)
        cost -= saved
    while (step := state.best_move(removing=False, room=budget.limit - cost - 1e-9 * budget.limit)) is not None:
        move, saved = step  # a big last step leaves slack: put back what fits (saved < 0: it adds)
        state.apply(move)
        cost -= saved
    while budget.cost(state.masks) > budget.limit:  # float drift of a latency budget, if any
        step = state.best_move(removing=True)
        if step is None:
            break
        state.apply(step[0])
    return state.masks


class _State:
    """Masks under construction, with the per-group terms that let a step be priced incrementally."""

    def __init__(self, importance, cost_model: CostModel, latency: LatencyModel, multiple: int, budget: Budget,
                 alpha: float) -> None:
        analysis = cost_model.analysis
        self.analysis, self.latency, self.multiple, self.alpha = analysis, latency, max(1, multiple), alpha
        self.masks = analysis.all_kept()
        self.groups = {g.id: g for g in analysis.prunable()}
        self.full_ms = max(latency.full_ms, _EPS)
        self.full_resource = max(budget.full, 1e-12)
        self.importance = {g: np.asarray(importance[g], dtype=np.float64) for g in self.groups}
        self.ranked = {g: np.argsort(-np.nan_to_num(self.importance[g], nan=0.0), kind="stable")
                       for g in self.groups}
        self.kept = {g: grp.size for g, grp in self.groups.items()}
        self.terms: dict[int, list] = {g: [] for g in self.groups}
        for term in (*latency.tables, *latency.elements):
            for g in term_groups(term):
                if g in self.terms:
                    self.terms[g].append(term)
        if budget.measure.needs_latency:
            monomials, self.resource_terms = [], self.terms
        else:
            monomials = budget.measure.terms()
            if monomials is None:
                raise OptionError(budget.option, f"{{option}}: the latency-aware extraction needs a metric with "
                                                 f"cost terms; '{budget.metric}' has none, prune without it")
            self.resource_terms = {g: [] for g in self.groups}
            for monomial in monomials:
                for g in term_groups(monomial):
                    if g in self.resource_terms:
                        self.resource_terms[g].append(monomial)
        self.contents = _branch_contents(cost_model)
        self.neighbours: dict[int, set[int]] = {g: {g} for g in self.groups}
        for term in (*latency.tables, *latency.elements, *monomials):
            related = term_groups(term) & set(self.groups)
            for g in related:
                self.neighbours[g] |= related
        for branch, inner in self.contents.items():  # a branch's worth and its contents' liveness
            for g in inner:
                self.neighbours[g].add(branch)
                self.neighbours[branch].add(g)
        self._priced: dict[tuple[int, bool], tuple] = {}

    # steps ------------------------------------------------------------------------------------------
    def _width_step(self, gid: int, removing: bool) -> int | None:
        """The next kept count down (or up) for a channel/head group, or None."""
        group, k = self.groups[gid], self.kept[gid]
        multiple = group.unit_multiple(self.multiple)
        if multiple > 1:
            if group.size < multiple:
                return None
            allowed = [c for c in range(multiple, group.size + 1, multiple)] + [group.size]
            allowed = sorted({c for c in allowed if c >= group.min_keep})
        else:
            step = max(1, group.size // 16)
            allowed = sorted({*range(group.size, group.min_keep - 1, -step), group.min_keep} - {0} or {group.size})
        lower = [c for c in allowed if c < k]
        upper = [c for c in allowed if c > k]
        if removing:
            return lower[-1] if lower else None
        return upper[0] if upper else None

    def _moves(self, removing: bool):
        for gid, group in self.groups.items():
            if self._inside_dropped(gid):
                continue
            if group.unit.droppable:
                own = self.importance[gid][0]
                alive = bool(self.masks[gid][0])
                if np.isinf(own) or alive != removing:
                    continue
                yield (gid, 0 if removing else 1)
            else:
                k = self._width_step(gid, removing)
                if k is not None:
                    yield (gid, k)

    def best_move(self, removing: bool, room: float | None = None) -> tuple[tuple[int, int], float] | None:
        """The step with the least importance per blended resource saved (removing), or the most
        importance per resource added among those within `room` of the budget (putting back); with
        the exact change of the budget's metric it makes."""
        best, best_key = None, None
        for move in self._moves(removing):
            priced = self._priced.get((move[0], removing))
            if priced is None or priced[0] != move:
                priced = (move, *self._change(move), self._worth(move))
                self._priced[(move[0], removing)] = priced
            _, ms, resource, worth = priced
            if room is not None and -resource > room:
                continue
            blended = self.alpha * ms / self.full_ms + (1.0 - self.alpha) * resource / self.full_resource
            if removing:
                key = (worth / max(blended, _EPS), -blended, move[0])
            else:
                key = (-worth / max(-blended, _EPS), -blended, move[0])
            if best_key is None or key < best_key:
                best, best_key = (move, resource), key
        return best

    def _worth(self, move) -> float:
        gid, k = move
        group = self.groups[gid]
        if group.unit.droppable:
            own = self.importance[gid][0]
            inside = sum(float(np.nansum(self.importance[c][self.ranked[c][: self.kept[c]]]))
                         for c in self.contents.get(gid, ()))
            return (0.0 if np.isnan(own) else float(own)) + inside
        lo, hi = sorted((k, self.kept[gid]))
        return float(np.nansum(self.importance[gid][self.ranked[gid][lo:hi]]))

    def _change(self, move) -> tuple[float, float]:
        """(milliseconds, budget metric) saved by `move`; negative when it adds."""
        gid, k = move
        previous = self.kept[gid]
        before = (sum(t.value(self.masks) for t in self.terms[gid]),
                  sum(m.value(self.masks) for m in self.resource_terms[gid]))
        self._set(gid, k)
        after = (sum(t.value(self.masks) for t in self.terms[gid]),
                 sum(m.value(self.masks) for m in self.resource_terms[gid]))
        self._set(gid, previous)
        return before[0] - after[0], before[1] - after[1]

    def apply(self, move) -> None:
        """Take the step; forget the priced steps of every group whose price it can change."""
        gid, k = move
        self._set(gid, k)
        for other in self.neighbours[gid]:
            self._priced.pop((other, True), None)
            self._priced.pop((other, False), None)

    def _set(self, gid: int, k: int) -> None:
        group = self.groups[gid]
        mask = np.zeros(group.size, dtype=bool)
        if group.unit.droppable:
            mask[:] = bool(k)
        else:
            mask[self.ranked[gid][:k]] = True
        self.masks[gid] = mask
        self.kept[gid] = k

    def _inside_dropped(self, gid: int) -> bool:
        return any(gid in inner and not self.masks[b][0] for b, inner in self.contents.items())


def _kept_importance(importance: Mapping[int, np.ndarray], groups: list[int], contents: Mapping[int, tuple[int, ...]],
                     masks: Mapping[int, np.ndarray]) -> float:
    """Importance of what `masks` keep: kept units of live groups (a dropped branch takes its contents
    along), kept branches counting their own finite importance."""
    dropped = {c for branch, inner in contents.items() if not masks[branch][0] for c in inner}
    total = 0.0
    for gid in groups:
        if gid not in dropped:
            values = np.asarray(importance[gid], dtype=np.float64)[masks[gid]]
            total += float(values[np.isfinite(values)].sum())
    return total


def _branch_contents(cost_model: CostModel) -> dict[int, tuple[int, ...]]:
    """Per branch group: the channel groups that only count in nodes and weights of that branch
    (every MACs and parameter term that mentions them is present only while the branch is)."""
    owners: dict[int, set[int]] = {}  # group -> branches that every term mentioning it needs
    for monomial in (*(t.macs for t in cost_model.node_terms), *cost_model.param_terms.values()):
        required = set.intersection(*(set(alt) for alt in monomial.presence)) if monomial.presence else set()
        for factor in monomial.factors:
            for term in factor.terms:
                owners[term.group] = owners[term.group] & required if term.group in owners else set(required)
    prunable = {g.id for g in cost_model.analysis.prunable() if not g.unit.droppable}
    contents: dict[int, list[int]] = {}
    for gid, branches in owners.items():
        if gid not in prunable:
            continue
        for b in branches:
            contents.setdefault(b, []).append(gid)
    return {b: tuple(sorted(gs)) for b, gs in contents.items()}
