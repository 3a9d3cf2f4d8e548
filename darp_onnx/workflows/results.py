"""Typed results of a prune run; `to_dict()` gives the JSON document the CLI prints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from darp_onnx.failures import in_stage
from darp_onnx.validation.checks import Fidelity

STAGES = ("load", "ingest", "analysis", "shapes", "latency_table", "data", "plan", "reference_outputs", "search",
          "extraction", "finetune", "rewrite", "validation", "write")


class StageTimings(dict):
    """Seconds per stage, in the order the stages ran (keys from `STAGES`)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times stage `name`; an unexpected exception inside becomes a one-line StageError naming it."""
        start = time.perf_counter()
        try:
            with in_stage(name):
                yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - start, 4)


class _Mapping:
    """Read access by key (`result.validation["provider"]`) for code written against the dict results."""

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class Validation(_Mapping):
    """What the written model passed and what it measures (validation stage)."""

    provider: str
    max_abs_diff: float
    fidelity: Fidelity
    latency_ms_before: float
    latency_ms_after: float
    latency_runs: int
    macs: int
    params: int
    checks: list[str]
    fidelity_on: str = ""  # which samples `fidelity` was measured on ('24 held-out samples', ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Extraction(_Mapping):
    """How the scores became masks (extraction stage); the latency fields only when layers were timed."""

    ranking: str
    channel_multiple: int
    masks: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    latency_device: str | None = None
    latency_measurements: int | None = None
    latency_untimed_nodes: list[str] | None = None
    estimated_latency_ms_before: float | None = None
    estimated_latency_ms_after: float | None = None
    candidates: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "masks" and getattr(self, f.name) is not None}


_NOT_JSON = ("masks", "model", "original", "input_shapes", "reports")


@dataclass
class PruneResult:
    input: str
    output: str | None
    method: str
    metric: str
    budget: float
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    nodes_before: int
    nodes_after: int
    channels_removed: int
    groups: list[dict[str, Any]]
    validation: Validation
    device: str
    seed: int
    search_steps: int
    finetune_steps: int
    loss: str
    extraction: Extraction
    timings: StageTimings = field(default_factory=StageTimings)
    data: dict[str, Any] = field(default_factory=dict)  # where the samples came from, images skipped
    resources: dict[str, Any] = field(default_factory=dict)  # time budget, plan, memory, peak RSS, search resolution
    masks: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    model: onnx.ModelProto | None = field(repr=False, default=None)
    original: onnx.ModelProto | None = field(repr=False, default=None)  # the input model, for reports
    input_shapes: dict[str, tuple[int, ...]] = field(repr=False, default_factory=dict)  # as resolved
    reports: dict[str, Path] = field(repr=False, default_factory=dict)  # kind -> path, with a report folder
    warnings: list[str] = field(default_factory=list)  # what to check before deploying it (workflows.advice)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (`darp-onnx prune --json`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_JSON}
        data["groups"] = [dict(g) for g in self.groups]
        data["validation"] = self.validation.to_dict()
        data["extraction"] = self.extraction.to_dict()
        data["timings"] = dict(self.timings)
        return data

    to_json = to_dict
