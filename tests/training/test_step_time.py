"""The step timer: a warm-up step, then the timed one; a warm-up step already slow is the measurement."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from types import SimpleNamespace

import pytest

import darp_onnx.search.step_time as step_time
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.training.dataset import synthetic_dataset

RESNET = Path(__file__).resolve().parents[2] / "sample_models" / "resnet.onnx"


@pytest.mark.parametrize(("seconds_per_step", "steps_run"), [(0.01, 2), (3.0, 1)])
def test_a_slow_warm_up_step_is_the_measurement(monkeypatch, seconds_per_step, steps_run):
    model = load_model(RESNET)
    proxy, analysis = build_proxy(model), analyse(model)
    data = synthetic_dataset(model, samples=4, shapes={"input": (1, 1, 32, 32)})
    clock = count()
    monkeypatch.setattr(step_time, "time", SimpleNamespace(perf_counter=lambda: _tick(clock, seconds_per_step)))
    runs = []
    real = step_time.batch_outputs
    monkeypatch.setattr(step_time, "batch_outputs", lambda *a, **k: runs.append(1) or real(*a, **k))
    measured = step_time.measure_step_seconds(proxy, analysis, data, 2)
    assert len(runs) == steps_run
    assert measured == pytest.approx(seconds_per_step)


def _tick(clock, seconds_per_step: float) -> float:
    """A clock on which every step (two readings: its start and its end) lasts `seconds_per_step`."""
    n = next(clock)
    return (n // 2) * 2 * seconds_per_step + (n % 2) * seconds_per_step
