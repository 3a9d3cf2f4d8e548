"""`validate_models(original, pruned)`: check a pruned ONNX file on its own and against its original.

Structure (onnx.checker full, strict shape inference), onnxruntime on the requested provider,
fidelity to the original (top-1 agreement, accuracy with labels, relative output error), optional
tolerances (`max_drift`, `atol`/`rtol`), latency, parameters, MACs and file size. Equivalence with the
masked proxy needs the masks, so only `prune` can check it.

Failures of the pruned artefact raise ValidationFailedError (exit 2); problems with the original,
the data or an option raise BadInputError (exit 1).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from darp_onnx.cost import count_graph
from darp_onnx.errors import BadInputError, DarpError, ValidationFailedError, first_line
from darp_onnx.load.input_shapes import recorded_input_shapes, resolve_input_shapes
from darp_onnx.load.inputs import graph_inputs
from darp_onnx.load.io import load_model
from darp_onnx.load.numbers import check_validate_numbers
from darp_onnx.load.output_sources import linear_outputs
from darp_onnx.load.post_processing import PostProcessing, split_post_processing
from darp_onnx.load.preflight import (
    check_memory,
    check_run_paths,
    check_weights,
    convertible_in,
    synthetic_data_bytes,
)
from darp_onnx.runtime.device import choose_device
from darp_onnx.runtime.session import make_session, session_provider
from darp_onnx.runtime.timer import measure_latencies
from darp_onnx.training.batching import feeds_of_several, session_batch_major
from darp_onnx.training.dataset import (
    FRESH_SEED_OFFSET,
    Dataset,
    check_dataset,
    data_notes,
    load_dataset,
    synthetic_dataset,
)
from darp_onnx.training.synthetic_check import one_decision_outputs, saturated_outputs
from darp_onnx.validation.checks import (
    EQUIVALENCE_ATOL,
    EQUIVALENCE_RTOL,
    check_structure,
    fidelity,
    fixed_classes,
    label_outputs,
    logit_outputs,
    run_batches,
)
from darp_onnx.validation.nonfinite import blank_where_reference_nonfinite
from darp_onnx.validation.outputs_kept import relative_error
from darp_onnx.validation.padded_ids import is_ids
from darp_onnx.validation.post_processing import check_whole, whole_feeds
from darp_onnx.workflows.advice import written_model_warnings

CHECKS = ("onnx.checker(full)", "strict shape inference", "same inputs and outputs", "finite outputs")


class ToleranceExceeded(ValidationFailedError):
    """An output is further from the original than --max-drift or --atol/--rtol allow (exit 2).
    `result` holds every measurement, so a caller can still print it."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def load_pruned(path: str | os.PathLike) -> onnx.ModelProto:
    """`load_model`, but a file that exists and cannot be read is a validation failure (exit 2): the
    artefact under test is what is broken. A missing path stays a bad argument (exit 1)."""
    if not Path(path).is_file():
        return load_model(path)
    try:
        return load_model(path)
    except BadInputError as exc:
        raise ValidationFailedError(str(exc)) from None


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Silence onnxruntime's own stderr lines while probing a provider that may not load."""
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(2)


def _session(model: onnx.ModelProto, device: str, label: str, error: type[DarpError]):
    try:
        with _quiet_onnxruntime():
            return make_session(model, device)
    except BadInputError:
        raise
    except Exception as exc:
        raise error(f"{label}: onnxruntime cannot load it ({first_line(exc)})") from None


def _dataset(data, original: onnx.ModelProto, shapes, samples: int, seed: int, preprocess: str | None) -> Dataset:
    """The test split of `data` when it has one, else its train split (image files: `preprocess`); without data,
    fresh synthetic inputs (`FRESH_SEED_OFFSET`: not those a data-free prune at `seed` was fitted to)."""
    if data is None:
        return synthetic_dataset(original, samples=samples, seed=seed + FRESH_SEED_OFFSET, shapes=shapes,
                                 micro_batches=feeds_of_several(shapes))
    try:
        return load_dataset(data, original, split="test", preprocess=preprocess, input_shapes=shapes)
    except BadInputError as first:
        try:
            return load_dataset(data, original, split="train", preprocess=preprocess, input_shapes=shapes)
        except BadInputError:
            raise first from None


def _count(model: onnx.ModelProto, shapes, label: str, error: type[DarpError]):
    try:
        return count_graph(model, shapes)
    except (ValueError, BadInputError) as exc:
        raise error(f"{label}: cannot count MACs ({first_line(exc)}); give --input-shape") from None


def _same_interface(original: onnx.ModelProto, pruned: onnx.ModelProto, label: str) -> list[str]:
    """The output names; PRUNED must take the same inputs and give the same outputs as ORIGINAL."""
    inputs_o = sorted(i.name for i in graph_inputs(original))
    inputs_p = sorted(i.name for i in graph_inputs(pruned))
    if inputs_o != inputs_p:
        raise ValidationFailedError(f"{label}: inputs {inputs_p} differ from the original's {inputs_o}")
    outputs_o = [o.name for o in original.graph.output]
    outputs_p = [o.name for o in pruned.graph.output]
    if outputs_o != outputs_p:
        raise ValidationFailedError(f"{label}: outputs {outputs_p} differ from the original's {outputs_o}")
    return outputs_o


def _networks(original: onnx.ModelProto, pruned: onnx.ModelProto, label: str
              ) -> tuple[onnx.ModelProto, onnx.ModelProto, PostProcessing | None]:
    """Both models compared before their post-processing (load.post_processing) where the original has some:
    its outputs (kept boxes, indices) change length with any change of the scores before them."""
    network_o, post, _ = split_post_processing(original, convertible_in(original))
    if post is None:
        return original, pruned, None
    network_p, post_p, _ = split_post_processing(pruned, convertible_in(pruned))
    if post_p is None or post_p.cut != post.cut:
        raise ValidationFailedError(f"{label}: its post-processing (the nodes after the network, from "
                                    f"{post.blocking[0]}) differs from the original's")
    return network_o, network_p, post


def _compare(names, after, before, label: str) -> list[dict[str, Any]]:
    rows = []
    for name, a, b in zip(names, after, before, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            raise ValidationFailedError(f"{label}: output '{name}' has shape {a64.shape}, the original's is "
                                        f"{b64.shape}")
        if not np.isfinite(a64).all():
            raise ValidationFailedError(f"{label}: output '{name}' contains NaN or Inf")
        diff = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
        rel = relative_error(a, b)  # for ids: the share that differ
        rows.append({"name": name, "shape": list(a64.shape), "max_abs_diff": diff, "relative_error": rel})
    return rows


def _tolerance_failures(rows, after, before, label: str, max_drift, atol, rtol) -> list[str]:
    failures = []
    if max_drift is not None:
        worst = max(rows, key=lambda r: r["relative_error"])
        if worst["relative_error"] > max_drift:
            failures.append(f"{label}: output '{worst['name']}' drifts by {worst['relative_error']:.3g} "
                            f"(relative L2 error vs the original), above --max-drift {max_drift:g}")
    if atol is not None or rtol is not None:
        atol = EQUIVALENCE_ATOL if atol is None else atol
        rtol = EQUIVALENCE_RTOL if rtol is None else rtol
        for row, a, b in zip(rows, after, before, strict=True):
            row["within_tolerance"] = bool(np.allclose(a, b, atol=atol, rtol=rtol))
            if not row["within_tolerance"]:
                failures.append(f"{label}: output '{row['name']}' differs from the original by up to "
                                f"{row['max_abs_diff']:.3g} (tolerance atol {atol:g}, rtol {rtol:g})")
    return failures


def _change(before: float, after: float) -> dict[str, float]:
    return {"before": before, "after": after, "ratio": after / before if before else float("nan")}


def _pruned_at(pruned: onnx.ModelProto, original: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The input sizes `prune` recorded in the pruned model, where the original has those inputs."""
    names = {v.name for v in graph_inputs(original)}
    return {name: dims for name, dims in recorded_input_shapes(pruned).items() if name in names}


def validate_models(
    original: str | os.PathLike,
    pruned: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    preprocess: str | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    device: str = "auto",
    atol: float | None = None,
    rtol: float | None = None,
    max_drift: float | None = None,
    latency_runs: int = 20,
    samples: int = 64,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Validate PRUNED against ORIGINAL and return the result (a JSON-ready dict).

    Raises ValidationFailedError when PRUNED is broken, ToleranceExceeded (with `.result`) when an
    output is beyond `max_drift` or `atol`/`rtol`, BadInputError for problems with the inputs."""
    if latency_runs < 0:
        raise BadInputError(f"--latency-runs {latency_runs}: must be 0 (no timing) or more")
    if samples < 1:
        raise BadInputError(f"--samples {samples}: must be at least 1")
    for flag, value in (("--max-drift", max_drift), ("--atol", atol), ("--rtol", rtol)):
        if value is not None and not value >= 0:
            raise BadInputError(f"{flag} {value}: must be a number >= 0")
    check_validate_numbers(max_drift=max_drift, atol=atol, rtol=rtol, latency_runs=latency_runs, samples=samples,
                           seed=seed)
    check_run_paths(model=original, output=None, force=False, data=data)
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    label_o, label_p = str(original), str(pruned)
    model_o = load_model(original)
    check_weights(model_o, label_o, allow_nonfinite=allow_nonfinite)
    model_p = load_pruned(pruned)
    try:
        check_weights(model_p, label_p, allow_nonfinite=allow_nonfinite)
    except BadInputError as exc:
        raise ValidationFailedError(str(exc)) from None
    check_structure(model_p, label_p)
    _same_interface(model_o, model_p, label_p)
    whole_o, whole_p = model_o, model_p
    model_o, model_p, post = _networks(model_o, model_p, label_p)
    names = [o.name for o in model_o.graph.output]
    shapes = resolve_input_shapes(model_o, dict(input_shapes or {}) or _pruned_at(model_p, model_o), what=label_o,
                                  check_fixed=True)
    if data is None:
        check_memory(synthetic_data_bytes(model_o, shapes, samples), f"{samples} synthetic samples",
                     "lower --samples or the sizes in --input-shape")
    dataset = _dataset(data, model_o, shapes, samples, seed, preprocess)
    try:
        check_dataset(dataset, model_p)
    except BadInputError as exc:
        raise ValidationFailedError(f"{label_p}: does not accept the original's inputs ({exc})") from None
    timings["load_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    choice = choose_device(device, probe=model_o, torch_needed=False)
    target, reason = choice.ort_device, choice.reason
    session_o = _session(model_o, target, label_o, BadInputError)
    session_p = _session(model_p, target, label_p, ValidationFailedError)
    if not dataset.micro_batches and not session_batch_major(session_o, model_o, shapes, seed=seed):
        dataset = dataset.as_micro_batches()  # a fixed batch or outputs not indexed by sample: as prune does
    micro = dataset.micro_batches
    before = run_batches(session_o, dataset.inputs, label_o, BadInputError, micro=micro)
    after = run_batches(session_p, dataset.inputs, label_p, ValidationFailedError, micro=micro)
    after, before = blank_where_reference_nonfinite(after, before)  # the original's own NaN: "no value"
    rows = _compare(names, after, before, label_p)
    if post is not None:  # the whole pruned model runs, its post-processing back in place
        post_notes = check_whole(whole_p, whole_o, whole_feeds(whole_o, dataset.timing_feeds(1)[0], shapes, seed),
                                 device=target, label=label_p)
    fid = fidelity(after, before, dataset.labels, names, fixed_classes(model_o), label_outputs(model_o),
                   logit_outputs(model_o), linear_outputs(model_o))
    timings["run_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    latency = None
    if latency_runs:
        one = dataset.timing_feeds()
        try:
            lat_o, lat_p = measure_latencies([session_o, session_p], one, runs=latency_runs)
        except Exception as exc:  # onnxruntime ran the batch but not one sample: ICLabel takes groups of 4
            raise BadInputError(f"{label_o}: onnxruntime cannot run the models on one sample ({first_line(exc)}); "
                                "give --input-shape with the batch one sample takes") from None
        latency = {"before": asdict(lat_o), "after": asdict(lat_p), "runs": latency_runs, "batch": 1,
                   "speedup": lat_o.median_ms / lat_p.median_ms if lat_p.median_ms else float("nan")}
    timings["latency_s"] = time.perf_counter() - clock

    count_o = _count(model_o, shapes, label_o, BadInputError)
    count_p = _count(model_p, resolve_input_shapes(model_p, dict(shapes), what=label_p), label_p,
                     ValidationFailedError)
    failures = _tolerance_failures(rows, after, before, label_p, max_drift, atol, rtol)
    warnings = written_model_warnings(fid, synthetic=dataset.synthetic,
                                      latency_ms_before=latency["before"]["median_ms"] if latency else 0.0,
                                      latency_ms_after=latency["after"]["median_ms"] if latency else 0.0,
                                      validating=True)
    if dataset.synthetic:  # what prune notes about the original on synthetic inputs, before any number
        warnings = [m for m in (saturated_outputs(model_o, before), one_decision_outputs(model_o, before)) if m] + \
            warnings
    result = {
        "original": label_o,
        "pruned": label_p,
        "passed": not failures,
        "failures": failures,
        "provider": {"original": session_provider(session_o), "pruned": session_provider(session_p),
                     "requested": device, "reason": reason},
        "data": {"source": dataset.source, "samples": len(dataset), "labels": dataset.labels is not None,
                 "preprocess": dataset.preprocess, "skipped_files": dataset.skipped, "notes": data_notes(dataset)},
        "checks": [*CHECKS, f"onnxruntime ({session_provider(session_p)})"],
        "outputs": rows,
        "max_abs_diff": max((r["max_abs_diff"] for r in rows), default=0.0),
        "fidelity": asdict(fid),
        "ids_only": all(is_ids(b) for b in before),  # the errors are shares of ids that differ (`padded_ids`)
        "warnings": warnings,  # what prune would warn about this model on these samples
        "max_drift": max_drift,
        "latency_ms": latency,
        "params": _change(count_o.params, count_p.params),
        "macs": _change(count_o.macs, count_p.macs),
        "file_bytes": _change(os.path.getsize(original), os.path.getsize(pruned)),
        "timings": timings,
        "input_shapes": {name: list(dims) for name, dims in shapes.items()},
        "note": "equivalence with the masked proxy is only checked inside `prune`, where the masks are known",
        "post_processing": None if post is None else {"kept": post.describe(), "notes": post_notes},
    }
    if failures:
        raise ToleranceExceeded(failures[0], result)
    return result
