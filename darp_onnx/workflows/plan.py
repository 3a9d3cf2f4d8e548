"""The plan stage of a prune: what the run can afford in memory and time, decided from measurements.

Memory first (the batch that fits `--max-memory`, or a refusal before anything large is allocated), then,
with a time budget, one forward pass and one search step are timed at a small batch, and the sample count,
step counts and batch size are chosen so that the whole run (stages already done, reference outputs,
search, fine-tune, rewrite and validation) ends within the budget. The search data are downscaled here
when `--search-resolution` applies to the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from darp_onnx.errors import OptionError
from darp_onnx.load.inputs import has_free_sizes
from darp_onnx.runtime.memory import MemoryPlan, activation_bytes_per_sample, peak_rss_bytes, plan_memory
from darp_onnx.search.baselines import BASELINES
from darp_onnx.search.resolution import reduced_search_data
from darp_onnx.search.step_time import measure_forward_seconds, measure_step_seconds
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.time_budget import (
    DATA_PASSES,
    MIN_BATCH,
    MIN_FINETUNE_STEPS,
    MIN_SEARCH_STEPS,
    SMALLEST_BATCH,
    StepPlan,
    plan_samples,
    plan_steps,
)

STEP_FORWARDS = 2.0  # a training step costs at least this many forward passes (forward + backward)
PROBE_STEP_S = 2.0  # a step is timed at a batch smaller than MIN_BATCH where one at MIN_BATCH would take longer
GRAPH_PASSES = 2.0  # rewrite + checks cost about this many times loading and analysing the model
CANDIDATE_SHARE = 0.5  # a latency-aware extraction times its candidates in about this share of the table's time
HOPELESS_OVERRUN = 2.0  # a run planned to take more than this times its budget is refused before the search
SAFETY_SHARE = 0.2  # this share of the budget is kept back: unplanned costs and load on the machine
# Full passes over the data besides the training steps (their sum is time_budget.DATA_PASSES); on a model whose
# forward pass takes seconds they are most of the run (RivaGAN at 256x256 ran 3.2x its budget without them).
SEARCH_PASSES = 2  # BatchNorm statistics for the search, re-estimated before it is folded back
RECOVERY_PASSES = 3  # before the fine-tune's first step: the loss over the data, BatchNorm statistics, re-estimate
TAIL_PASSES = 5  # after its last: statistics re-estimated, the proxy's outputs, onnxruntime before and after,
# and both again on fresh synthetic samples (half as many) where there are no real ones to hold out


def usable_seconds(budget: float | None) -> float | None:
    """The part of a time budget the plan spends; the rest is the safety margin."""
    return None if budget is None else budget * (1.0 - SAFETY_SHARE)


@dataclass
class RunPlan:
    """What the plan stage decided; `resources` of the result reports it."""

    started: float  # perf_counter() when the run began
    seconds: float | None  # the time budget (None: none)
    memory: MemoryPlan
    steps: StepPlan
    forward_seconds: float = math.nan  # per sample
    search_data: Dataset | None = None  # downscaled search data, when the reduced search applies
    resolution_note: str = "full resolution"
    expected_s: float | None = None  # seconds from the start to the planned end (set after planning)
    threads: int = field(default_factory=torch.get_num_threads)

    def note_full_pass(self, seconds: float, samples: int) -> None:
        """A whole pass over the data, timed: where it cost more per sample than the plan's probe measured (a
        transformer at the pass's larger batch: SVTRv2, 94 ms planned, 130 ms a sample in the passes), the
        deadlines and estimates after it count the passes at the measured cost."""
        if samples > 0 and math.isfinite(self.forward_seconds) and seconds / samples > self.forward_seconds:
            self.forward_seconds = seconds / samples

    def seconds_left(self) -> float | None:
        usable = usable_seconds(self.seconds)
        return None if usable is None else usable - (time.perf_counter() - self.started)

    def describe(self) -> dict[str, Any]:
        return {"time_budget_s": self.seconds, "plan": self.steps.describe(), "memory": self.memory.describe(),
                "forward_ms_per_sample": None if math.isnan(self.forward_seconds) else
                round(1e3 * self.forward_seconds, 3),
                "search_resolution": self.resolution_note, "torch_threads": self.threads,
                "peak_rss_mib": round(peak_rss_bytes() / 2**20, 1)}


def tail_seconds(forward: float, samples: int, latency_runs: int, graph_seconds: float) -> float:
    """After the fine-tune: TAIL_PASSES over the data, the latency runs, rewrite and checks."""
    return forward * (TAIL_PASSES * samples + 2 * latency_runs) + GRAPH_PASSES * graph_seconds


def recovery_start_seconds(forward: float, samples: int) -> float:
    """Before the fine-tune's first step (RECOVERY_PASSES)."""
    return forward * RECOVERY_PASSES * samples


def passes_before_tail_seconds(forward: float, samples: int) -> float:
    """The passes over the data before the tail: reference outputs, the search's, the recovery's start."""
    return forward * samples * (1 + SEARCH_PASSES) + recovery_start_seconds(forward, samples)


def _linear(measured: float, at: int):
    """Seconds at batch b from a measurement at batch `at`: proportional, an upper bound (steps get cheaper per
    sample as the batch grows)."""
    return lambda batch: measured * max(batch, 1) / at


def _step_timers(run, dataset: Dataset, search_data: Dataset | None, batch: int, warm_up: bool = True):
    """Seconds of a fine-tune step and of a search step as functions of the batch, measured at `batch`."""
    device = run.device.torch_device
    tune = _linear(measure_step_seconds(run.proxy, run.analysis, dataset, batch, device=device, warm_up=warm_up),
                   batch)
    if search_data is None:
        return tune, tune
    return tune, _linear(measure_step_seconds(run.proxy, run.analysis, search_data, batch, device=device,
                                              warm_up=False), batch)


def plan_run(run, started: float) -> tuple[RunPlan, Dataset]:
    """Decide memory, samples, steps and batch for `run` (proxy and dataset built). Returns the plan and the
    data set cut to the planned sample count."""
    config, dataset, device = run.config, run.dataset, run.device.torch_device
    weights = sum(p.numel() * p.element_size() for p in run.proxy.parameters())
    activations = activation_bytes_per_sample(run.model, run.input_shapes)
    data_bytes = 2 * sum(v.nbytes for v in dataset.inputs.values())
    memory = plan_memory(limit=config.resources.memory_limit(), weight_bytes=weights, activation_bytes=activations,
                         data_bytes=data_bytes)
    requested_batch = config.search.batch_size
    batch = min(requested_batch or 32, memory.max_batch)
    seconds = config.resources.seconds(str(device))
    search_data, note = None, "full resolution"
    if config.search.method == "darp":
        search_data, note = reduced_search_data(run.proxy, dataset, config.resources.search_resolution, device)
        if search_data is None and config.resources.search_resolution < 1:  # asked for, and not applied
            run.progress("note", {"message": f"--search-resolution {config.resources.search_resolution:g} does "
                                             f"not apply: {note}; the search runs at full resolution"})
    # step counts and batch all given: nothing to plan; counts alone: the batch that fits the budget (a PP-OCR
    # detector at 640x640 given 30 + 10 steps ran at batch 29, the memory's cap, far past --time-budget)
    planned_all = None not in (config.search.steps, config.recovery.steps, requested_batch)
    if seconds is None or planned_all:
        steps = plan_steps(seconds=None, step_seconds=lambda b: math.nan, batch_size=batch,
                           search_steps=config.search.steps, finetune_steps=config.recovery.steps,
                           search=spends_search_steps(config))
        return RunPlan(started, seconds, memory, steps, search_data=search_data, resolution_note=note), dataset
    probe = max(1, min(MIN_BATCH, batch, len(dataset)))
    forward = measure_forward_seconds(run.proxy, dataset, batch=probe, device=device)
    probe = min(probe, max(SMALLEST_BATCH, int(PROBE_STEP_S / (3 * forward))))  # a step costs about 3 forwards
    samples = plan_samples(len(dataset), seconds=seconds, forward_seconds=forward)
    if samples < len(dataset):
        dataset = dataset.limited(samples, config.seed)
        if search_data is not None:
            search_data = search_data.limited(samples, config.seed)
    refuse_before_timing_steps(seconds, time.perf_counter() - started, forward, len(dataset),
                               requested_batch or SMALLEST_BATCH, resizable=has_free_sizes(run.model),
                               search_share=_elements_share(search_data, dataset))
    tune, search = _step_timers(run, dataset, search_data, probe)
    graph = sum(run.timings.get(s, 0.0) for s in ("load", "analysis", "shapes"))
    elapsed = time.perf_counter() - started
    training = usable_seconds(seconds) - elapsed - passes_before_tail_seconds(forward, len(dataset)) - tail_seconds(
        forward, len(dataset), config.validation.latency_runs, graph) - CANDIDATE_SHARE * run.timings.get(
        "latency_table", 0.0)
    steps = plan_steps(seconds=max(training, 0.0), step_seconds=tune, search_step_seconds=search, batch_size=batch,
                       max_batch=memory.max_batch, search_steps=config.search.steps,
                       finetune_steps=config.recovery.steps, fixed_batch=requested_batch is not None,
                       search=spends_search_steps(config))
    if steps.batch_size < probe:  # per-sample cost grows below the probe's batch: plan on a measurement there
        small = steps.batch_size
        tune, search = _step_timers(run, dataset, search_data, small, warm_up=False)
        steps = plan_steps(seconds=max(training - (time.perf_counter() - started - elapsed), 0.0), step_seconds=tune,
                           search_step_seconds=search, batch_size=small, search_steps=config.search.steps,
                           finetune_steps=config.recovery.steps, fixed_batch=True, search=spends_search_steps(config))
    return RunPlan(started, seconds, memory, steps, forward, search_data, note), dataset


def spends_search_steps(config) -> bool:
    """Whether the run has a use for search steps: the search's, Taylor's gradient passes, or a ranking's
    fine-tune (which gets the steps it does not search) unless fine-tune steps alone were asked for: for
    `--method l1 --finetune-steps 0` the plan counted 31 search steps and said 4 min where the run took 81 s."""
    return config.search.method not in BASELINES or config.recovery.steps is None or config.search.steps is not None


def expected_total(plan: RunPlan, samples: int, latency_runs: int) -> float | None:
    """Seconds from the start of the run to its expected end, as planned now (call at the end of the plan stage)."""
    if plan.seconds is None or math.isnan(plan.steps.training_seconds):
        return None
    done = time.perf_counter() - plan.started
    return done + passes_before_tail_seconds(plan.forward_seconds, samples) + plan.steps.training_seconds + \
        tail_seconds(plan.forward_seconds, samples, latency_runs, 0.0)


def refuse_hopeless_budget(plan: RunPlan, samples: int, *, resizable: bool) -> None:
    """OptionError when even the smallest plan is expected to take over HOPELESS_OVERRUN times the time budget
    (ISNet at 1024x1024 on two cores: about 40 min against 2): said before the search, not after the budget.
    `resizable`: an input has a free size besides the batch, so a smaller --input-shape is a way out."""
    if plan.seconds is None or plan.expected_s is None or plan.expected_s <= HOPELESS_OVERRUN * plan.seconds:
        return
    steps = plan.steps
    raise _too_short(plan.seconds, plan.expected_s, "about", (
        f"{steps.search_steps} search + {steps.finetune_steps} fine-tune at batch {steps.batch_size}, "
        f"{steps.step_seconds:.1f} s a step, on {samples} samples"), resizable)


def _too_short(seconds: float, needed: float, about: str, what: str, resizable: bool) -> OptionError:
    minutes = math.ceil(1.25 * needed / 60)
    return OptionError("time_budget", (
        f"{{option}} {seconds / 60:.1f} min is far too short for this model here: the fewest steps ({what}) need "
        f"{about} {needed / 60:.1f} min; give {{option}} {minutes}m (or off)"
        + (", or prune at a smaller {option:input_shapes}" if resizable else "")))


def _elements_share(search_data: Dataset | None, dataset: Dataset) -> float:
    """A search sample's input elements over a full one's (--search-resolution 0.5 on pictures: a quarter)."""
    if search_data is None:
        return 1.0
    full = sum(v[0].size for v in dataset.inputs.values())
    return min(1.0, sum(v[0].size for v in search_data.inputs.values()) / max(full, 1))


def refuse_before_timing_steps(seconds: float | None, elapsed: float, forward: float, samples: int, batch: int,
                               *, resizable: bool, search_share: float = 1.0) -> None:
    """The same refusal from the forward pass alone, before a training step is timed: at 1024x1024 a step took
    26-36 s to time, and the refusal came after 75-84 s of a 2-minute budget. A step costs at least
    STEP_FORWARDS forward passes per sample, so this bound is low and refuses only what the full plan would.
    `search_share`: what a search step's samples cost against a full one's (a 3-D U-Net searched at half
    resolution was refused at the full resolution's minimum)."""
    if seconds is None:
        return
    fewest = (MIN_SEARCH_STEPS * search_share + MIN_FINETUNE_STEPS) * batch * STEP_FORWARDS * forward
    needed = elapsed + DATA_PASSES * samples * forward + fewest
    if needed > HOPELESS_OVERRUN * seconds:
        raise _too_short(seconds, needed, "at least", (
            f"{MIN_SEARCH_STEPS} search + {MIN_FINETUNE_STEPS} fine-tune at batch {batch}, on {samples} samples; "
            f"a forward pass takes {forward:.2f} s a sample"), resizable)
