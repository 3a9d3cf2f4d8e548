"""Outputs the original model itself leaves NaN or infinite on purpose: a graph network that writes NaN
for every target its mask input switches off (caustic-nmr's PaiNN), log-probabilities of -inf for masked
positions. Those elements mean "no value"; the pruned model must leave them so too, and nothing is
compared or fitted there. A non-finite value where the reference has a number is still an overflow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def blank_where_reference_nonfinite(actual: Sequence[np.ndarray], reference: Sequence[np.ndarray]
                                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both lists with the elements where the reference is not finite set to 0 (in float outputs of equal
    shapes); the arrays are returned as they are where the reference is finite throughout."""
    out_a, out_r = [], []
    for a, r in zip(actual, reference, strict=False):
        a, r = np.asarray(a), np.asarray(r)
        if np.issubdtype(r.dtype, np.floating) and a.shape == r.shape and not np.isfinite(r).all():
            hole = ~np.isfinite(r)
            a, r = np.where(hole, 0, a).astype(a.dtype), np.where(hole, 0, r).astype(r.dtype)
        out_a.append(a)
        out_r.append(r)
    return out_a, out_r


def finite_target(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A distillation target with its non-finite elements set to 0, and the mask of the finite ones
    (None where every element is finite)."""
    finite = torch.isfinite(target)
    if bool(finite.all()):
        return target, None
    return torch.where(finite, target, torch.zeros_like(target)), finite
