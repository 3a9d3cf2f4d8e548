"""Temperature schedules, registered by name so the CLI's choices come from the registry."""

from __future__ import annotations

import math
from collections.abc import Callable

ScheduleFn = Callable[[float, float, float], float]  # (start, end, progress in [0, 1]) -> value

SCHEDULES: dict[str, ScheduleFn] = {
    "geometric": lambda start, end, t: start * (end / start) ** t,
    "linear": lambda start, end, t: start + (end - start) * t,
    "cosine": lambda start, end, t: end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t)),
    "constant": lambda start, end, t: start,
}


def temperature(kind: str, start: float, end: float, step: int, total: int) -> float:
    """The temperature at `step` of `total` (progress clamps at 1)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule '{kind}'; choose one of {', '.join(SCHEDULES)}")
    progress = 1.0 if total <= 1 else min(step / (total - 1), 1.0)
    return SCHEDULES[kind](start, end, progress)
