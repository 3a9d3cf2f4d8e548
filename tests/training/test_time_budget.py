"""The time-budget planner: fewer steps (and smaller batches) for slower steps, explicit counts win."""

from __future__ import annotations

import math

import pytest

from darp_onnx.errors import BadInputError
from darp_onnx.training.time_budget import (
    DEFAULT_FINETUNE_STEPS,
    DEFAULT_SEARCH_STEPS,
    FEWEST_SAMPLES,
    MIN_BATCH,
    MIN_SAMPLES,
    SMALLEST_BATCH,
    finetune_steps_left,
    parse_duration,
    plan_samples,
    plan_steps,
)


def _linear(per_sample: float):
    return lambda batch: per_sample * batch


def test_fast_steps_keep_the_defaults():
    plan = plan_steps(seconds=300, step_seconds=_linear(0.001), batch_size=32)
    assert (plan.search_steps, plan.finetune_steps, plan.batch_size) == (DEFAULT_SEARCH_STEPS,
                                                                         DEFAULT_FINETUNE_STEPS, 32)
    assert not plan.over_budget


def test_slower_step_time_picks_fewer_steps():
    fast = plan_steps(seconds=300, step_seconds=_linear(0.02), batch_size=32)
    slow = plan_steps(seconds=300, step_seconds=_linear(0.2), batch_size=32)
    assert slow.search_steps + slow.finetune_steps < fast.search_steps + fast.finetune_steps
    assert slow.training_seconds <= 300 and fast.training_seconds <= 300
    assert slow.batch_size <= fast.batch_size


def test_batch_halves_before_the_search_gets_too_short():
    plan = plan_steps(seconds=300, step_seconds=_linear(0.1), batch_size=32)
    assert plan.batch_size < 32 and plan.batch_size >= MIN_BATCH
    assert plan.training_seconds <= 300


def test_explicit_steps_win():
    plan = plan_steps(seconds=10, step_seconds=_linear(1.0), batch_size=32, search_steps=50, finetune_steps=7)
    assert (plan.search_steps, plan.finetune_steps) == (50, 7)


def test_explicit_search_steps_leave_the_rest_to_the_fine_tune():
    plan = plan_steps(seconds=60, step_seconds=lambda b: 0.5, batch_size=8, search_steps=100)
    assert (plan.search_steps, plan.finetune_steps) == (100, 20) and not plan.over_budget


def test_cheaper_search_steps_buy_more_search():
    same = plan_steps(seconds=60, step_seconds=lambda b: 1.0, batch_size=8)
    cheap = plan_steps(seconds=60, step_seconds=lambda b: 1.0, batch_size=8, search_step_seconds=lambda b: 0.25)
    assert cheap.search_steps > same.search_steps


def test_no_budget_keeps_the_defaults_without_measuring():
    def fail(batch):
        raise AssertionError("measured without a budget")

    plan = plan_steps(seconds=None, step_seconds=fail, batch_size=32)
    assert plan.search_steps == DEFAULT_SEARCH_STEPS


def test_fine_tune_replanned_from_time_left():
    assert finetune_steps_left(10.0, 1.0, 100, None) == 10
    assert finetune_steps_left(10.0, 1.0, 100, 100) == 100  # asked for explicitly


def test_samples_capped_for_slow_forward_passes():
    assert plan_samples(1000, seconds=300, forward_seconds=1.0) < plan_samples(1000, seconds=300,
                                                                              forward_seconds=0.01)
    assert plan_samples(50, seconds=300, forward_seconds=0.01) == 50  # fewer than the floor: all of them


def test_samples_floor_gives_way_to_the_budget_only_when_their_passes_take_over_half_of_it():
    assert plan_samples(1000, seconds=300, forward_seconds=0.2) == MIN_SAMPLES  # 64 samples' passes: 141 s
    assert plan_samples(1000, seconds=300, forward_seconds=0.3) == 36  # 211 s: the share's cap, 36 x 11 x 0.3 s
    assert plan_samples(1000, seconds=120, forward_seconds=0.094) == 46  # SVTRv2: 64 samples ran 138 s of 120
    assert plan_samples(1000, seconds=300, forward_seconds=10.0) == FEWEST_SAMPLES


def test_batch_goes_below_the_minimum_only_to_meet_the_budget():
    fits_at_min = plan_steps(seconds=300, step_seconds=_linear(0.2), batch_size=32)  # short search, fits at 8
    assert fits_at_min.batch_size == MIN_BATCH
    tight = plan_steps(seconds=30, step_seconds=_linear(0.2), batch_size=32)  # the fewest steps at 8: 40 s
    assert tight.batch_size < MIN_BATCH and tight.training_seconds <= 30 and not tight.over_budget
    hopeless = plan_steps(seconds=1, step_seconds=_linear(0.2), batch_size=32)
    assert hopeless.batch_size == SMALLEST_BATCH and hopeless.over_budget


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("90s", 90), ("1h30m", 5400), ("45", 45), ("off", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "-3", "0", "5 minutes"])
def test_bad_durations(text):
    with pytest.raises(BadInputError, match="--time-budget"):
        parse_duration(text)


def test_search_clock_follows_the_deadline_but_keeps_a_minimum():
    import time

    from darp_onnx.training.schedule_clock import MIN_STEPS_BY_CLOCK, ScheduleClock

    late = ScheduleClock(200, time.perf_counter() - 1.0)  # the deadline has passed already
    positions = [late.position(i) for i in range(MIN_STEPS_BY_CLOCK + 1)]
    assert all(p < 200 for p in positions[:-1]) and positions[-1] >= 200  # the minimum runs, then it stops
    assert ScheduleClock(200, None).position(7) == 7
    assert ScheduleClock(200, time.perf_counter() + 1e4).position(7) == 7


def test_a_hopeless_budget_names_a_smaller_input_only_where_the_model_takes_one():
    from darp_onnx.errors import OptionError
    from darp_onnx.runtime.memory import MemoryPlan
    from darp_onnx.workflows.plan import RunPlan, refuse_hopeless_budget

    steps = plan_steps(seconds=1, step_seconds=_linear(10.0), batch_size=32)
    plan = RunPlan(0.0, 120.0, MemoryPlan(1, 0, 1, 8), steps, expected_s=2238.0)
    with pytest.raises(OptionError, match=r"need about 37.3 min; give time_budget 47m \(or off\)$"):
        refuse_hopeless_budget(plan, 16, resizable=False)
    with pytest.raises(OptionError, match="or prune at a smaller input_shapes$"):
        refuse_hopeless_budget(plan, 16, resizable=True)
    refuse_hopeless_budget(RunPlan(0.0, 120.0, MemoryPlan(1, 0, 1, 8), steps, expected_s=230.0), 16, resizable=True)


def test_a_timed_pass_dearer_than_the_probe_raises_the_per_sample_cost_and_a_cheaper_one_does_not():
    from darp_onnx.runtime.memory import MemoryPlan
    from darp_onnx.workflows.plan import RunPlan

    steps = plan_steps(seconds=None, step_seconds=_linear(1.0), batch_size=8)
    plan = RunPlan(0.0, 120.0, MemoryPlan(1, 0, 1, 8), steps, forward_seconds=0.094)
    plan.note_full_pass(8.3, 64)  # SVTRv2's reference pass: 130 ms a sample
    assert plan.forward_seconds == pytest.approx(8.3 / 64)
    plan.note_full_pass(1.0, 64)
    assert plan.forward_seconds == pytest.approx(8.3 / 64)
    unplanned = RunPlan(0.0, None, MemoryPlan(1, 0, 1, 8), steps)
    unplanned.note_full_pass(8.3, 64)
    assert math.isnan(unplanned.forward_seconds)


def test_step_counts_given_without_a_batch_get_the_batch_that_fits_the_budget():
    """A 640x640 detector given 30 + 10 steps ran at batch 29 (the memory's cap) long past its budget."""
    fitted = plan_steps(seconds=60, step_seconds=_linear(0.5), batch_size=32, search_steps=30, finetune_steps=10)
    assert (fitted.search_steps, fitted.finetune_steps) == (30, 10)
    assert fitted.batch_size < 32 and fitted.training_seconds <= 60 and not fitted.over_budget
    kept = plan_steps(seconds=60, step_seconds=_linear(0.5), batch_size=32, search_steps=30, finetune_steps=10,
                      fixed_batch=True)
    assert kept.batch_size == 32
