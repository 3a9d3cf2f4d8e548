"""Schedules that follow a deadline: a loop planned for `steps` steps that must end by a wall-clock time."""

from __future__ import annotations

import time

MIN_STEPS_BY_CLOCK = 20  # a loop cut short by its deadline still takes this many steps


class ScheduleClock:
    """Where the schedules stand: the step count, or the share of the time to the deadline if that is further.
    The first MIN_STEPS_BY_CLOCK steps always run (the last of them at the end of the schedules), so a loop
    that stops once `position(count) >= steps` ends near its deadline with its schedules completed."""

    def __init__(self, steps: int, deadline: float | None) -> None:
        self.steps, self.deadline, self.start = steps, deadline, time.perf_counter()

    def position(self, count: int) -> int:
        if self.deadline is None:
            return count
        share = (time.perf_counter() - self.start) / max(self.deadline - self.start, 1e-9)
        position = max(count, int(share * self.steps))
        if count < min(MIN_STEPS_BY_CLOCK, self.steps):
            floor = self.steps - min(MIN_STEPS_BY_CLOCK, self.steps) + count  # leave room for the minimum
            return min(position, floor)
        return position
