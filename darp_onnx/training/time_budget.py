"""`--time-budget`: step counts, batch size and sample count from measured step times, so a prune ends in time.

The planner is a pure function of the seconds left and a `step_seconds(batch)` measurement: defaults
(200 search, 100 fine-tune steps at the requested batch) when they fit; otherwise the batch halves while
the search would get fewer than PREFERRED_SEARCH_STEPS steps (down to MIN_BATCH), and the step counts
shrink in proportion (search 2 : fine-tune 1). Where even the fewest steps at MIN_BATCH outrun the budget
(large activations: a 256x256 video frame, a 9-second waveform), the batch goes on halving down to
SMALLEST_BATCH: noisier steps, but the run ends when the user asked. Step counts given explicitly are kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from darp_onnx.errors import BadInputError

TIME_FLAG = "--time-budget"
DEFAULT_CPU_SECONDS = 300.0
DEFAULT_GPU_SECONDS = 120.0
DEFAULT_SEARCH_STEPS = 200
DEFAULT_FINETUNE_STEPS = 100
PREFERRED_SEARCH_STEPS = 100
MIN_SEARCH_STEPS = 20
MIN_FINETUNE_STEPS = 5
MIN_BATCH = 8
SMALLEST_BATCH = 2  # below MIN_BATCH only to meet the budget; 1 would leave batch statistics undefined
DATA_PASS_SHARE = 0.4  # at most this share of the time goes to full passes over the data (see DATA_PASSES)
DATA_PASSES = 11  # full passes outside the training steps: reference outputs, BatchNorm statistics and their
# re-estimates in the search (2) and recovery (4, with the loss before it), the outputs after, onnxruntime twice,
# and once more on fresh samples (data-free fidelity)
MIN_SAMPLES = 64  # the fewest samples while their passes take at most MIN_SAMPLES_SHARE of the time
MIN_SAMPLES_SHARE = 0.5
FEWEST_SAMPLES = 16  # where even MIN_SAMPLES do not (a forward pass of seconds): the budget first
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str | float | int | None) -> float | None:
    """'5m', '90s', '1h30m', '300' (seconds) -> seconds; 'none'/'off' -> None (no budget)."""
    if text is None:
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower().replace(" ", "")
        if raw in ("none", "off"):
            return None
        if re.fullmatch(r"[0-9]*\.?[0-9]+", raw):
            seconds = float(raw)
        elif re.fullmatch(r"([0-9]*\.?[0-9]+[hms])+", raw):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]*\.?[0-9]+)([hms])", raw))
        else:
            raise BadInputError(f"{TIME_FLAG} {text!r}: give a duration such as 5m, 90s, 1h30m or 'off'")
    if not seconds > 0:
        raise BadInputError(f"{TIME_FLAG} {text!r}: give a positive duration, or 'off'")
    return seconds


def default_budget(device: str) -> float:
    return DEFAULT_GPU_SECONDS if device.startswith("cuda") else DEFAULT_CPU_SECONDS


@dataclass(frozen=True)
class StepPlan:
    search_steps: int
    finetune_steps: int
    batch_size: int
    step_seconds: float  # seconds of one fine-tune step at batch_size (nan when not measured)
    training_seconds: float  # planned seconds of search + fine-tune
    over_budget: bool  # even the smallest plan does not fit the time left

    def describe(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in asdict(self).items()}


def _scaled(requested: int | None, default: int, scale: float, floor: int) -> int:
    if requested is not None:
        return requested
    return min(default, max(int(default * scale), floor))


def plan_steps(*, seconds: float | None, step_seconds: Callable[[int], float], batch_size: int,
               max_batch: int | None = None, search_steps: int | None = None, finetune_steps: int | None = None,
               search: bool = True, fixed_batch: bool = False,
               search_step_seconds: Callable[[int], float] | None = None) -> StepPlan:
    """Steps and batch that fit `seconds` of training (None: no budget, the defaults); step counts given are
    kept, and the batch shrinks to fit them. `search` False plans a recovery fine-tune only (baselines);
    `fixed_batch` keeps `batch_size` (capped by `max_batch`);
    `search_step_seconds` times a search step when it differs from a fine-tune step (reduced resolution)."""
    batch = max(1, min(batch_size, max_batch or batch_size))
    default_search = DEFAULT_SEARCH_STEPS if search else 0
    wanted_search = default_search if search_steps is None else search_steps
    wanted_finetune = DEFAULT_FINETUNE_STEPS if finetune_steps is None else finetune_steps
    if seconds is None or (search_steps is not None and finetune_steps is not None and fixed_batch):
        return StepPlan(wanted_search, wanted_finetune, batch, math.nan, math.nan, False)
    search_timer = search_step_seconds or step_seconds
    while True:
        tune, step = step_seconds(batch), (search_timer(batch) if search else 0.0)
        fixed = step * (search_steps or 0) + tune * (finetune_steps or 0)
        free = (step * default_search if search_steps is None else 0.0) + (
            tune * DEFAULT_FINETUNE_STEPS if finetune_steps is None else 0.0)
        scale = min(max(seconds - fixed, 0.0) / free, 1.0) if free > 0 else 1.0
        planned_search = _scaled(search_steps, default_search, scale, MIN_SEARCH_STEPS if search else 0)
        planned_finetune = _scaled(finetune_steps, DEFAULT_FINETUNE_STEPS, scale, MIN_FINETUNE_STEPS)
        total = step * planned_search + tune * planned_finetune
        short = search and search_steps is None and planned_search < PREFERRED_SEARCH_STEPS
        if fixed_batch:
            break
        if batch > MIN_BATCH and (short or total > seconds):
            batch = max(MIN_BATCH, batch // 2)
        elif batch > SMALLEST_BATCH and total > seconds:
            batch = max(SMALLEST_BATCH, batch // 2)
        else:
            break
    return StepPlan(planned_search, planned_finetune, batch, tune, total, total > seconds * 1.05)


def finetune_steps_left(seconds_left: float | None, step_seconds: float, planned: int, requested: int | None) -> int:
    """After the search: the fine-tune steps that still fit (the planned ones at most; a requested count stays)."""
    if requested is not None or seconds_left is None or not math.isfinite(step_seconds) or step_seconds <= 0:
        return planned
    return min(planned, max(int(seconds_left / step_seconds), MIN_FINETUNE_STEPS))


def plan_samples(samples: int, *, seconds: float | None, forward_seconds: float, passes: int = DATA_PASSES) -> int:
    """How many samples to keep so the full passes over the data take at most DATA_PASS_SHARE of `seconds`:
    at least MIN_SAMPLES where their passes take at most MIN_SAMPLES_SHARE of `seconds`, else at least
    FEWEST_SAMPLES. (With the passes of 64 samples allowed all of the budget, an SVTRv2 at 94 ms a sample spent
    66 s of 120 on them and ran 138 s.)"""
    if seconds is None or forward_seconds <= 0:
        return samples
    cap = int(DATA_PASS_SHARE * seconds / (passes * forward_seconds))
    floor = MIN_SAMPLES if MIN_SAMPLES * passes * forward_seconds <= MIN_SAMPLES_SHARE * seconds else FEWEST_SAMPLES
    return min(samples, max(cap, floor))
