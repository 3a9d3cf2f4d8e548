"""Channel counts as affine expressions of group keep-vectors, and costs as products of them.

A count such as "input channels of conv3" is `const + sum(weight * keep[group][start:stop])`. It can be
evaluated exactly on boolean masks or in expectation on keep probabilities (a differentiable tensor).
A node's MACs are `coef * product(counts)`; with independent gates the expectation of a product of
counts of *different* groups is the product of their expectations, which is what the search penalises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Term:
    group: int
    start: int
    stop: int
    weight: int  # channels per unit (AxisMap.width)


@dataclass(frozen=True)
class Affine:
    const: int
    terms: tuple[Term, ...] = ()

    def value(self, masks: Mapping[int, np.ndarray]) -> int:
        total = self.const
        for t in self.terms:
            keep = masks.get(t.group)
            kept = (t.stop - t.start) if keep is None else int(np.count_nonzero(keep[t.start : t.stop]))
            total += t.weight * kept
        return total

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor | float:
        total: torch.Tensor | float = float(self.const)
        for t in self.terms:
            p = probs.get(t.group)
            kept = float(t.stop - t.start) if p is None else p[t.start : t.stop].sum()
            total = total + t.weight * kept
        return total


@dataclass(frozen=True)
class Monomial:
    """`coef * prod(factors)`, present unless every alternative in `presence` has a dropped branch.

    `presence` lists, per consumer, the branch groups that must all be kept for that consumer to
    survive the rewrite; an empty tuple of alternatives means always present.
    """

    coef: int
    factors: tuple[Affine, ...]
    presence: tuple[tuple[int, ...], ...] = ()

    def value(self, masks: Mapping[int, np.ndarray]) -> int:
        if self.presence and not any(all(_kept(masks, b) for b in alt) for alt in self.presence):
            return 0
        result = self.coef
        for f in self.factors:
            result *= f.value(masks)
        return result

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor | float:
        result: torch.Tensor | float = float(self.coef)
        for f in self.factors:
            result = result * f.expected(probs)
        if self.presence:
            absent: torch.Tensor | float = 1.0
            for alt in self.presence:
                alive: torch.Tensor | float = 1.0
                for b in alt:
                    p = probs.get(b)
                    alive = alive * (1.0 if p is None else p[0])
                absent = absent * (1.0 - alive)
            result = result * (1.0 - absent)
        return result


def _kept(masks: Mapping[int, np.ndarray], group: int) -> bool:
    keep = masks.get(group)
    return True if keep is None else bool(keep[0])
