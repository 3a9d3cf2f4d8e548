"""The two-temperature relaxation, schedules and the penalty controller."""

from __future__ import annotations

import math

import pytest
import torch

from darp_onnx.search.darp import PENALTY_RANGE, ramped_target, update_penalty
from darp_onnx.search.relax import keep_probabilities, sample_gates
from darp_onnx.search.schedule import SCHEDULES, temperature


def test_samples_lie_in_the_unit_interval_and_carry_gradients():
    theta = torch.zeros(1000, requires_grad=True)
    z = sample_gates(theta, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.all((z >= 0) & (z <= 1))
    assert float(((z > 0.01) & (z < 0.99)).float().mean()) > 0.5
    z.sum().backward()
    assert torch.all(theta.grad >= 0) and float((theta.grad > 0).float().mean()) > 0.99


def test_low_sampling_temperature_gives_nearly_binary_gates_with_the_keep_rate():
    theta = torch.full((20000,), math.log(3.0))  # P(keep) = sigmoid(theta) = 0.75
    z = sample_gates(theta, 0.01, generator=torch.Generator().manual_seed(1))
    assert ((z < 0.01) | (z > 0.99)).float().mean() > 0.98
    assert float((z > 0.5).float().mean()) == pytest.approx(0.75, abs=0.02)


def test_hard_gates_are_binary_and_straight_through():
    theta = torch.randn(100, generator=torch.Generator().manual_seed(2), requires_grad=True)
    z = sample_gates(theta, 0.5, hard=True, generator=torch.Generator().manual_seed(3))
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    z.sum().backward()
    assert float((theta.grad > 0).float().mean()) > 0.9


def test_sampling_is_deterministic_for_a_seed():
    theta = torch.linspace(-2, 2, 50)
    a = sample_gates(theta, 0.3, generator=torch.Generator().manual_seed(5))
    b = sample_gates(theta, 0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_penalty_temperature_sharpens_keep_probabilities():
    theta = torch.tensor([-1.0, 1.0])
    soft, sharp = keep_probabilities(theta, 1.0), keep_probabilities(theta, 0.05)
    assert sharp[0] < soft[0] < 0.5 < soft[1] < sharp[1]
    assert float(sharp[1]) > 0.999


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedules_run_from_start_to_end(kind):
    assert temperature(kind, 1.0, 0.1, 0, 100) == pytest.approx(1.0)
    end = 1.0 if kind == "constant" else 0.1
    assert temperature(kind, 1.0, 0.1, 99, 100) == pytest.approx(end)
    assert temperature(kind, 1.0, 0.1, 500, 100) == pytest.approx(end)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        temperature("zigzag", 1.0, 0.1, 0, 10)


def test_ramped_target_falls_from_full_cost_to_the_budget():
    assert ramped_target(0.25, 0, 100, 0.5) == pytest.approx(1.0)
    assert ramped_target(0.25, 25, 100, 0.5) == pytest.approx(0.625)
    assert ramped_target(0.25, 50, 100, 0.5) == pytest.approx(0.25)
    assert ramped_target(0.25, 99, 100, 0.5) == pytest.approx(0.25)
    assert ramped_target(0.25, 0, 100, 0.0) == pytest.approx(0.25)


def test_penalty_grows_over_budget_shrinks_under_and_stays_bounded():
    assert update_penalty(1.0, 0.6, 0.5, 1.0) > 1.0
    assert update_penalty(1.0, 0.4, 0.5, 1.0) < 1.0
    assert update_penalty(1.0, 0.5, 0.5, 1.0) == pytest.approx(1.0)
    assert update_penalty(PENALTY_RANGE[1], 10.0, 0.1, 1.0) == PENALTY_RANGE[1]
    assert update_penalty(PENALTY_RANGE[0], 0.0, 0.9, 1.0) == PENALTY_RANGE[0]
