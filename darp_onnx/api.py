"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from typing import Any

import torch

from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.io import default_opset, load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.runtime.session import make_session, run_session
from darp_onnx.validation.checks import max_abs_diffs


def check_model(path: str | os.PathLike, *, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Load a model, build its proxy and compare the proxy's outputs with onnxruntime on CPU."""
    model = load_model(path)
    proxy = build_proxy(model, source=str(path))
    feeds = synthetic_inputs(model, batch=batch, seed=seed)
    expected = run_session(make_session(model), feeds)
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


def prune(*args, **kwargs):
    """See `darp_onnx.workflows.prune.prune`."""
    from darp_onnx.workflows.prune import prune as _prune

    return _prune(*args, **kwargs)


def write_prune_report(result, directory: str | os.PathLike) -> dict[str, Any]:
    """Write report.json, report.md and report.html describing a prune result into `directory`."""
    from darp_onnx.load.io import load_model as _load
    from darp_onnx.report import diff_models, write_reports

    before = _load(result.input)
    diff = diff_models(before, result.model)
    diff.latency_ms_before = result.validation["latency_ms_before"]
    diff.latency_ms_after = result.validation["latency_ms_after"]
    diff.fidelity = result.validation["fidelity"]
    diff.provider = result.validation["provider"]
    diff.method = result.method
    diff.budget = result.budget
    diff.extraction = result.extraction or None
    return write_reports(diff, directory)


def inspect(path: str | os.PathLike, *, input_shapes=None) -> dict[str, Any]:
    """Op coverage, channel groups (size, members, frozen reasons), MACs and parameters of a model."""
    from collections import Counter

    from darp_onnx.cost import CostModel
    from darp_onnx.groups import analyse
    from darp_onnx.load.input_shapes import resolve_input_shapes
    from darp_onnx.proxy import supported_ops

    model = load_model(path)
    input_shapes = resolve_input_shapes(model, dict(input_shapes or {}))
    supported = set(supported_ops()) | {"Constant"}
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node)
    analysis = analyse(model)
    cost = CostModel(model, analysis, input_shapes)
    groups = []
    for g in analysis.groups:
        members = [f"{t}[{a}]" for (t, a), m in analysis.axis_maps.items() if any(s.group == g.id for s in m.segments)]
        groups.append({"id": g.id, "label": g.label, "kind": g.kind, "size": g.size, "min_keep": g.min_keep,
                       "frozen": g.frozen, "members": members})
    return {
        "model": str(path),
        "opset": default_opset(model),
        "nodes": len(model.graph.node),
        "ops": [{"op": op, "count": n, "supported": op in supported} for op, n in sorted(ops.items())],
        "unsupported_ops": sorted(op for op in ops if op not in supported),
        "macs": cost.full_macs,
        "params": cost.full_params,
        "smallest_macs": cost.macs(cost.smallest_masks()),
        "groups": groups,
        "prunable_groups": len(analysis.prunable()),
        "prunable_channels": int(sum(g.size for g in analysis.prunable() if g.kind != "branch")),
        "branches": len(analysis.branches),
        "frozen_reasons": list(analysis.frozen_reasons),
    }


def finetune(*args, **kwargs):
    """See `darp_onnx.workflows.finetune.finetune`."""
    from darp_onnx.workflows.finetune import finetune as _finetune

    return _finetune(*args, **kwargs)


def validate(original, pruned, **kwargs) -> dict[str, Any]:
    """See `darp_onnx.validation.compare.validate_models`."""
    from darp_onnx.validation.compare import validate_models

    return validate_models(original, pruned, **kwargs)
