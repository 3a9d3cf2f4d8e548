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


def nonfinite_note(names: Sequence[str], outputs: Sequence[np.ndarray], synthetic: bool) -> str | None:
    """What to tell the user when the original leaves some of its outputs' elements NaN or infinite on the
    samples (swift-f0 on standard normal 'fmin' and 'fmax': pitch NaN in every frame). None otherwise."""
    shares = {name: 1.0 - float(np.isfinite(values).mean()) for name, values in zip(names, outputs, strict=False)
              if np.issubdtype(np.asarray(values).dtype, np.floating) and np.size(values)}
    found = {name: share for name, share in shares.items() if share > 0}
    if not found:
        return None
    on = "the synthetic inputs" if synthetic else "your samples"
    listed = ", ".join(f"'{name}' in {share:.0%} of its elements" for name, share in found.items())
    note = (f"the original model leaves output {listed} NaN or infinite on {on}: nothing is fitted or compared "
            "there, and the pruned model must leave them so too")
    if any(share == 1.0 for share in found.values()):
        note += ("; an output with no number at all is not measured (the output error leaves it out): "
                 + ("pass --data with real samples" if synthetic else "check that your samples are what the "
                    "model takes"))
    return note


def samples_without_numbers(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample (first axis), whether every float output of the original holds only NaN or infinite values:
    nothing to fit there, and its NaN poisons the gradients (a diffusion UNet's log(sigma) for a negative
    synthetic sigma made every weight NaN in the search)."""
    floats = [np.asarray(o) for o in outputs if np.issubdtype(np.asarray(o).dtype, np.floating) and np.size(o)]
    if not floats:
        return np.zeros(len(outputs[0]) if outputs else 0, dtype=bool)
    dead = np.ones(len(floats[0]), dtype=bool)
    for values in floats:
        dead &= ~np.isfinite(values.reshape(len(values), -1)).any(axis=1)
    return dead
