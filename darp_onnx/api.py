"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import onnx
import torch

from darp_onnx.errors import BadInputError, first_line
from darp_onnx.load.example_sizes import counting_sizes
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.io import default_opset, load_model
from darp_onnx.load.numbers import check_number, check_seed
from darp_onnx.load.post_processing import split_post_processing
from darp_onnx.load.preflight import (
    check_edges,
    check_loaded_model,
    check_run_memory,
    check_run_paths,
    check_spec,
    check_weights,
    convertible_in,
)
from darp_onnx.load.shapes import static_shapes
from darp_onnx.proxy import build_proxy
from darp_onnx.runtime.session import make_session, run_session
from darp_onnx.validation.checks import max_abs_diffs
from darp_onnx.workflows.finetune import finetune
from darp_onnx.workflows.prune import PruneResult, prune

__all__ = ["check_model", "diff", "finetune", "inspect", "prune", "prune_diff", "validate", "write_prune_report"]


def check_model(path: str | os.PathLike, *, batch: int = 2, seed: int = 0, allow_nonfinite: bool = False,
                input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """Load a model, build its proxy and compare the proxy's outputs with onnxruntime on CPU, at `input_shapes`
    or, for free dims after the batch, at example sizes (as `inspect`). Weights holding NaN or Inf are refused
    unless `allow_nonfinite` (the comparison would mean nothing)."""
    from darp_onnx.load.input_shapes import resolve_input_shapes

    check_number(batch, "batch", low=1, whole=True)
    check_seed(seed)
    check_run_paths(model=path, output=None, force=False)
    model = load_model(path)
    check_loaded_model(model, str(path), allow_nonfinite=allow_nonfinite)
    given = resolve_input_shapes(model, dict(input_shapes or {}), check_fixed=True)
    shapes = _at_batch(model, counting_sizes(model, given)[0], given, batch)
    check_run_memory(model, static_shapes(model, shapes, batch=batch), {}, batch_size=1, synthetic_samples=0)
    proxy = build_proxy(model, source=str(path), front_ends=True)
    feeds = synthetic_inputs(model, batch=batch, seed=seed, shapes=shapes)
    try:
        expected = run_session(make_session(model), feeds)
    except Exception as exc:  # onnxruntime's own checks: a model it refuses is bad input here
        raise BadInputError(f"{path}: onnxruntime cannot run the model ({first_line(exc)}); fix or re-export it") \
            from None
    with torch.no_grad():
        actual = proxy.run({k: torch.from_numpy(v) for k, v in feeds.items()})
    diffs = max_abs_diffs([actual[name].numpy() for name in proxy.output_names], expected)
    return {
        "model": str(path),
        "opset": default_opset(model),
        "nodes": len(model.graph.node),
        "parameters": int(sum(p.numel() for p in proxy.parameters())),
        "max_abs_diff": max(diffs, default=0.0),
    }


def write_prune_report(result: PruneResult, directory: str | os.PathLike) -> dict[str, Any]:
    """Write report.json, report.md and report.html describing a prune result into `directory`.

    Built from the result alone (its input and pruned models), so it works for a ModelProto input too."""
    from darp_onnx.report import write_reports

    return write_reports(prune_diff(result), directory)


def prune_diff(result: PruneResult):
    """The graph diff of a prune result with its measurements (latency, fidelity, how it was extracted)."""
    from darp_onnx.report import diff_models

    if result.original is None or result.model is None:
        raise BadInputError("this prune result holds no models (original and pruned); prune again to report it")
    diff = diff_models(result.original, result.model, input_shapes=result.input_shapes)
    diff.latency_ms_before = result.validation.latency_ms_before
    diff.latency_ms_after = result.validation.latency_ms_after
    diff.fidelity = asdict(result.validation.fidelity)
    diff.provider = result.validation.provider
    diff.method = result.method
    diff.budget = result.budget
    diff.extraction = result.extraction.to_dict() or None
    diff.run = {"timings": dict(result.timings), "resources": result.resources, "data": result.data}
    return diff


def diff(
    before: str | os.PathLike | onnx.ModelProto,
    after: str | os.PathLike | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    labels: tuple[str, str] | None = None,
):
    """What changed from `before` to `after` (paths or models): a `report.GraphDiff` (nodes removed,
    added and resized, MACs, parameters); `report.to_json/to_markdown/to_html` render it."""
    from darp_onnx.report import diff_models

    models = [m if isinstance(m, onnx.ModelProto) else load_model(m) for m in (before, after)]
    names = labels or tuple("<model>" if isinstance(m, onnx.ModelProto) else str(m) for m in (before, after))
    shapes, sizes_from = _diff_sizes(models[0], models[1], dict(input_shapes or {}), names)
    result = diff_models(models[0], models[1], input_shapes=shapes, labels=names)
    result.input_shapes_from = sizes_from
    return result


def _diff_sizes(before: onnx.ModelProto, after: onnx.ModelProto, given: dict[str, tuple[int, ...]],
                names: tuple[str, str]) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """The sizes `diff` counts both models at, and where they came from: those given, else those `after` was
    pruned at, else `inspect`'s sizes for `before`. `diff` of a super-resolution model with a free height
    counted no MACs where `inspect` counted them at example sizes."""
    from darp_onnx.load.input_shapes import recorded_input_shapes, resolve_input_shapes

    recorded = {} if given else recorded_input_shapes(after)
    shapes: dict[str, tuple[int, ...]] = {}
    for model, name in zip((before, after), names, strict=True):
        shapes.update(resolve_input_shapes(model, given or recorded, what=name))
    counted, sizes_from = counting_sizes(before, shapes)
    if counted == shapes:
        sizes_from = "--input-shape" if given else "the sizes the model was pruned at" if recorded else None
    return counted, sizes_from


def inspect(path: str | os.PathLike, *, input_shapes=None) -> dict[str, Any]:
    """Op coverage, channel groups (size, members, frozen reasons), MACs and parameters of a model."""
    from collections import Counter

    from darp_onnx.cost import CostModel, count_graph_params
    from darp_onnx.groups import analyse
    from darp_onnx.groups.head_units import HEAD
    from darp_onnx.load.ingest import ingest
    from darp_onnx.load.input_shapes import resolve_input_shapes
    from darp_onnx.proxy import supported_ops

    model = load_model(path)
    check_edges(model, str(path))
    check_weights(model, str(path), allow_nonfinite=True)
    check_spec(model, str(path))
    input_shapes, sizes_from = counting_sizes(model, resolve_input_shapes(model, dict(input_shapes or {})))
    model, ifs_note = _without_static_ifs(model, input_shapes, str(path))
    supported = set(supported_ops()) | {"Constant"}
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node)
    coverage = {
        "model": str(path),
        "opset": default_opset(model),
        "nodes": len(model.graph.node),
        "ops": [{"op": op, "count": n, "supported": op in supported} for op, n in sorted(ops.items())],
        "unsupported_ops": sorted(op for op in ops if op not in supported),
    }
    convertible = convertible_in(model)
    network, post, _ = split_post_processing(model, convertible)
    coverage["post_processing"] = None if post is None else post.describe()
    if post is None and not all(convertible(node) for node in model.graph.node):  # as prune decides (front ends
        return _coverage_only(model, coverage)  # run through onnxruntime: load.front_end)
    if post is not None:  # counted and analysed as prune does: the network before it
        model = network
        input_shapes = {k: v for k, v in input_shapes.items() if k in post.network_inputs}
    params = count_graph_params(model)  # as prune counts it: before ingestion copies shared constants
    ingested = ingest(model, input_shapes)
    model = ingested.model
    analysis = analyse(model)
    cost = CostModel(model, analysis, input_shapes, observed=ingested.shapes)
    groups = []
    for g in analysis.groups:
        members = [f"{t}[{a}]" for (t, a), m in analysis.axis_maps.items() if any(s.group == g.id for s in m.segments)]
        groups.append({"id": g.id, "label": g.label, "kind": g.kind, "size": g.size, "width": g.width,
                       "min_keep": g.min_keep, "frozen": g.frozen, "members": members})
    return {
        **coverage,
        "analysed": True,
        "input_shapes": {name: list(dims) for name, dims in input_shapes.items()},
        "input_shapes_from": sizes_from,
        "control_flow": ifs_note,
        "macs": cost.full_macs,
        "params": params,
        "smallest_macs": cost.macs(cost.smallest_masks()),
        "groups": groups,
        "prunable_groups": len(analysis.prunable()),
        "prunable_channels": int(sum(g.size * g.width for g in analysis.prunable() if g.unit.counts_as_channels)),
        "prunable_heads": int(sum(g.size for g in analysis.prunable() if g.kind == HEAD.name)),
        "branches": len(analysis.branches),
        "frozen_reasons": list(analysis.frozen_reasons),
    }


def _at_batch(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], given, batch: int
              ) -> dict[str, tuple[int, ...]]:
    """Example sizes with `batch` on a free leading dim (shapes the user gave stay as given)."""
    from darp_onnx.load.inputs import graph_inputs

    free = {v.name for v in graph_inputs(model) if v.type.tensor_type.shape.dim
            and not v.type.tensor_type.shape.dim[0].dim_value}
    return {name: (batch, *dims[1:]) if name in free and name not in given else dims for name, dims in shapes.items()}


def _without_static_ifs(model: onnx.ModelProto, input_shapes, source: str) -> tuple[onnx.ModelProto, str | None]:
    """The model with its shape-decided `If`s replaced by their branch, as `prune` does (inspect said an
    SVTRv2 could not be analysed for its `If`s, which prune inlined and pruned), and what was done; an `If`
    that onnxruntime cannot decide stays, and is reported as an op the proxy cannot run."""
    from darp_onnx.errors import DarpError
    from darp_onnx.load.control_flow import inline_static_ifs

    if not any(n.op_type == "If" for n in model.graph.node):
        return model, None
    try:
        inlined = inline_static_ifs(model, input_shapes, source)
    except DarpError:
        return model, None
    return inlined.model, inlined.describe()


def _coverage_only(model: onnx.ModelProto, coverage: dict[str, Any]) -> dict[str, Any]:
    """The report of a model with ops the proxy cannot convert: op coverage and stored parameters only
    (the channel analysis would take long, and `prune` refuses such a model anyway)."""
    from darp_onnx.cost import count_graph_params
    from darp_onnx.load.refusals import QUANTIZED_OPS

    missing = ", ".join(coverage["unsupported_ops"])
    quantized = bool(QUANTIZED_OPS & set(coverage["unsupported_ops"]))
    params = max(count_graph_params(model), _stored_numbers(model))  # int8 weights MatMulInteger reads count too
    return {**coverage, "analysed": False, "quantized": quantized, "macs": None, "params": params,
            "smallest_macs": None,
            "groups": [], "prunable_groups": 0, "prunable_channels": 0, "prunable_heads": 0, "branches": 0,
            "frozen_reasons": [f"not analysed: ops the proxy cannot convert ({missing})"]}


def _stored_numbers(model: onnx.ModelProto) -> int:
    """Elements of the model's numeric initializers, whatever their type: a quantized embedding model of 72 MB
    was said to hold "7,719 stored parameters" (its float ones)."""
    from math import prod

    return sum(prod(t.dims) for t in model.graph.initializer if t.data_type != onnx.TensorProto.STRING)


def validate(
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
    """Validate PRUNED against ORIGINAL (see `darp_onnx.validation.compare.validate_models`)."""
    from darp_onnx.validation.compare import validate_models

    return validate_models(original, pruned, data=data, preprocess=preprocess, input_shapes=input_shapes,
                           device=device, atol=atol, rtol=rtol, max_drift=max_drift, latency_runs=latency_runs,
                           samples=samples, seed=seed, allow_nonfinite=allow_nonfinite)
