"""The fine-tune follows its deadline: a fake clock that runs ahead ends it early, with its learning-rate
schedule completed; without a deadline every planned step runs."""

from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.proxy import build_proxy
from darp_onnx.training import schedule_clock
from darp_onnx.training.dataset import synthetic_dataset
from darp_onnx.training.recovery import RecoveryRecipe, recover
from darp_onnx.training.schedule_clock import MIN_STEPS_BY_CLOCK
from darp_onnx.training.steps import predict
from tests.groups.builder import GraphBuilder


class FakeClock:
    """`time.perf_counter` that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def tiny():
    b = GraphBuilder(43, opset=17)
    model = b.build(b.conv(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 8), 8, 4))
    proxy = build_proxy(model)
    data = synthetic_dataset(model, samples=16, shapes={"x": (1, 3, 8, 8)})
    return proxy, data, predict(proxy, data)


def _recipe(steps: int) -> RecoveryRecipe:
    return RecoveryRecipe(steps=steps, lr=1e-3, batch_size=8, batchnorm=False, warmup=0.0)


def test_a_clock_running_ahead_ends_the_finetune_early(tiny, monkeypatch):
    proxy, data, teacher = tiny
    clock = FakeClock()
    monkeypatch.setattr(schedule_clock.time, "perf_counter", clock)
    positions: list[int] = []
    losses = recover(proxy, data, teacher, _recipe(200), deadline=clock.now + 50.0,
                     on_step=lambda step, loss: positions.append(step))
    assert MIN_STEPS_BY_CLOCK <= len(losses) < 100  # ~50 one-second steps fit before the deadline
    assert positions[-1] >= 150  # the schedule followed the clock to (near) its end
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_a_passed_deadline_still_runs_the_minimum(tiny, monkeypatch):
    proxy, data, teacher = tiny
    clock = FakeClock()
    monkeypatch.setattr(schedule_clock.time, "perf_counter", clock)
    losses = recover(proxy, data, teacher, _recipe(200), deadline=clock.now - 10.0)
    assert len(losses) == MIN_STEPS_BY_CLOCK


def test_without_a_deadline_every_step_runs(tiny, monkeypatch):
    proxy, data, teacher = tiny
    monkeypatch.setattr(schedule_clock.time, "perf_counter", FakeClock())
    losses = recover(proxy, data, teacher, _recipe(30))
    assert len(losses) == 30 and np.isfinite(losses).all()
