"""`prune()`: analysis -> proxy -> search -> rewrite -> validate -> write."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from darp_onnx.cost import CostModel, count_graph
from darp_onnx.cost.latency import LatencyModel, compare_latencies
from darp_onnx.errors import BadInputError, ValidationFailedError
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model, save_model
from darp_onnx.proxy import build_proxy
from darp_onnx.rewrite import rewrite
from darp_onnx.runtime.device import choose_device, exact_float32
from darp_onnx.runtime.session import kernel_channel_multiple
from darp_onnx.search import BASELINES, METHODS, DarpConfig, darp_search, extract_masks, make_budget
from darp_onnx.search.budget import budget_option
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.latency_extract import extract_masks_by_latency
from darp_onnx.search.loss import TaskLoss, check_labels_fit
from darp_onnx.training.dataset import Dataset, load_dataset, synthetic_dataset
from darp_onnx.training.steps import predict, train_steps
from darp_onnx.validation.checks import check_equivalence, check_structure, fidelity, measure_latency, run_model

ProgressFn = Callable[[str, dict[str, float]], None]


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
    validation: dict[str, Any]
    device: str
    seed: int
    search_steps: int
    finetune_steps: int
    loss: str
    extraction: dict[str, Any] = field(default_factory=dict)
    masks: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    model: onnx.ModelProto | None = field(repr=False, default=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("masks")
        data.pop("model")
        return data


def default_output_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name[: -len(".onnx")] + ".pruned.onnx" if path.name.endswith(".onnx")
                          else path.name + ".pruned.onnx")


def _dataset(model, source: str, data, input_shapes, seed: int, samples: int) -> Dataset:
    if data is None:
        return synthetic_dataset(model, samples=samples, seed=seed, shapes=input_shapes)
    if isinstance(data, Dataset):
        return data
    return load_dataset(data, model)


def _group_rows(analysis, masks) -> list[dict[str, Any]]:
    rows = []
    for g in analysis.groups:
        kept = int(np.count_nonzero(masks[g.id])) if g.id in masks else g.size
        rows.append({"id": g.id, "label": g.label, "kind": g.kind, "size": g.size, "kept": kept,
                     "frozen": g.frozen})
    return rows


def prune(
    model_or_path: str | os.PathLike | onnx.ModelProto,
    *,
    output: str | os.PathLike | None = None,
    target_flops: float | None = None,
    target_params: float | None = None,
    target_latency: float | None = None,
    method: str = "darp",
    data: str | os.PathLike | Dataset | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    search_steps: int = 200,
    finetune_steps: int = 100,
    batch_size: int = 32,
    lr: float = 1e-3,
    search_lr: float = 3e-4,
    channel_multiple: int | str | None = None,
    latency_aware: bool = False,
    latency_weight: float = 1.0,
    keep_branches: bool = False,
    darp: DarpConfig | None = None,
    synthetic_samples: int = 64,
    device: str = "auto",
    seed: int = 0,
    force: bool = False,
    write: bool = True,
    latency_runs: int = 20,
    progress: ProgressFn | None = None,
) -> PruneResult:
    """Prune a model to a MACs (`target_flops`), parameter or latency budget and write the validated result.

    MACs and parameter budgets are fractions in (0, 1] or absolute counts; `target_latency` is a
    fraction of the latency that the layer timings estimate for the model (it implies
    `latency_aware`; the search then penalises expected latency). Without `data`, inputs are synthetic and the
    loss is distillation from the original model; with labels in the data, cross-entropy.

    `latency_aware` times the model's layers on the target runtime and removes what costs the most
    time per importance lost (see `search.latency_extract`); `channel_multiple` ('auto', the default:
    what the runtime's kernels want; 1: any width) keeps channel counts aligned; `latency_weight`
    (default 1) is what a relative latency cut is worth against relative importance lost when the
    latency-aware extraction picks among its candidates."""
    if method not in METHODS:
        raise BadInputError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if target_flops is None and target_params is None and target_latency is None:
        target_flops = 0.5
    budget_option(target_flops, target_params, target_latency)  # bad budget options fail before any work
    if not latency_weight >= 0:
        raise BadInputError(f"--latency-weight {latency_weight}: give a number >= 0 (1: importance and time alike)")
    latency_aware = latency_aware or target_latency is not None
    source = "<model>" if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else load_model(model_or_path)
    out_path = None
    if write:
        if output is None and isinstance(model_or_path, onnx.ModelProto):
            raise BadInputError("give an output path (-o) when passing a model object")
        out_path = Path(output) if output is not None else default_output_path(model_or_path)
        if out_path.exists() and not force:
            raise BadInputError(f"{out_path}: already exists; pass --force to overwrite it or choose another path")
    input_shapes = resolve_input_shapes(model, dict(input_shapes or {}))
    choice = choose_device(device)
    multiple = resolve_channel_multiple(channel_multiple, choice.ort_device)
    torch.manual_seed(seed)
    report = progress or (lambda stage, info: None)

    analysis = analyse(model)
    cost_model = CostModel(model, analysis, input_shapes)
    latency = None
    if latency_aware:
        report("latency", {"device": choice.ort_device})
        latency = LatencyModel(model, cost_model, device=choice.ort_device, channel_multiple=multiple)
    budget = make_budget(cost_model, target_flops=target_flops, target_params=target_params,
                         target_latency=target_latency, latency_model=latency)
    dataset = _dataset(model, source, data, input_shapes, seed, synthetic_samples)
    proxy = build_proxy(model, source=source).to(choice.torch_device)
    proxy.eval()
    reference = predict(proxy, dataset, device=choice.torch_device)
    if dataset.labels is not None:
        check_labels_fit(dataset.labels, reference, dataset.source)
        loss_fn = TaskLoss(labels=dataset.labels)
    else:
        loss_fn = TaskLoss(teacher=reference)
    report("start", {"groups": len(analysis.prunable()), "budget_fraction": budget.fraction(cost_model)})

    if method == "darp":
        config = darp or DarpConfig(steps=search_steps, batch_size=batch_size, lr_weights=search_lr, seed=seed)
        result = darp_search(proxy, analysis, cost_model, budget, dataset, loss_fn, config,
                             device=choice.torch_device, on_step=lambda rec: report("search", rec))
        scores, steps_used = result.scores, config.steps
        importance = {g: 0.5 * (1.0 + np.tanh(s / 2.0)) for g, s in scores.items()}  # sigmoid: keep probabilities
    else:
        scores, steps_used = BASELINES[method](model, analysis, seed), 0
        importance = scores
    if keep_branches:
        scores, importance = (
            {g: (np.full(len(s), np.inf) if analysis.groups[g].kind == "branch" else s) for g, s in d.items()}
            for d in (scores, importance))
    extraction: dict[str, Any] = {"ranking": "score", "channel_multiple": multiple}
    if latency is not None:
        one = {k: v[:1] for k, v in dataset.inputs.items()}

        def measure(candidates):
            rewritten = [rewrite(model, analysis, m) for m in candidates]
            return compare_latencies(rewritten, one, device=choice.ort_device)

        chosen = extract_masks_by_latency(importance, cost_model, latency, budget, channel_multiple=multiple,
                                          measure=measure, latency_weight=latency_weight)
        masks = chosen.masks
        extraction.update(ranking=f"latency-aware ({chosen.chosen})", latency_device=choice.ort_device,
                          latency_measurements=latency.measurements, latency_untimed_nodes=latency.untimed,
                          estimated_latency_ms_before=round(latency.full_ms, 4),
                          estimated_latency_ms_after=round(latency.estimate(masks), 4),
                          candidates={k: {m: round(v, 4) for m, v in c.items()} for k, c in chosen.candidates.items()})
    else:
        masks = extract_masks(scores, cost_model, budget, channel_multiple=multiple)

    handle = attach_gates(proxy, analysis)
    handle.set_masks(masks)
    recovery = finetune_steps + (search_steps - steps_used if method != "darp" else 0)
    if recovery > 0:
        train_steps(proxy, dataset, loss_fn, steps=recovery, lr=lr, batch_size=batch_size, seed=seed,
                    device=choice.torch_device, on_step=lambda s, loss: report("finetune", {"step": s, "loss": loss}))
    with exact_float32():
        masked_outputs = predict(proxy, dataset, device=choice.torch_device)
    handle.remove()
    pruned = rewrite(proxy.to_onnx(), analysis, masks)

    validation = _validate(model, pruned, dataset, masked_outputs, reference_device=choice.ort_device,
                           latency_runs=latency_runs, label=str(out_path or "pruned model"),
                           input_shapes=input_shapes, expected_macs=cost_model.macs(masks),
                           expected_params=cost_model.params(masks))
    if write:
        save_model(pruned, out_path, force=force,
                   protect=() if isinstance(model_or_path, onnx.ModelProto) else (model_or_path,))
    return PruneResult(
        input=source, output=None if out_path is None else str(out_path), method=method, metric=budget.metric,
        budget=budget.limit, flops_before=cost_model.full_macs, flops_after=validation["macs"],
        params_before=cost_model.full_params, params_after=validation["params"],
        nodes_before=len(model.graph.node), nodes_after=len(pruned.graph.node),
        channels_removed=int(sum(m.size - np.count_nonzero(m) for g, m in masks.items()
                                 if analysis.groups[g].kind != "branch")),
        groups=_group_rows(analysis, masks), validation=validation, device=choice.torch_device, seed=seed,
        search_steps=steps_used, finetune_steps=recovery, loss=loss_fn.mode, extraction=extraction, masks=masks,
        model=pruned,
    )


def resolve_channel_multiple(value: int | str | None, ort_device: str) -> int:
    """An int >= 1 from an int, or from 'auto' or None (the default): the runtime's kernel block on
    `ort_device`, see `kernel_channel_multiple`."""
    if value is None:
        value = "auto"
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return kernel_channel_multiple(ort_device)
        try:
            value = int(value)
        except ValueError:
            raise BadInputError(f"--channel-multiple {value}: give a whole number >= 1 or 'auto'") from None
    if value < 1:
        raise BadInputError(f"--channel-multiple {value}: give a whole number >= 1 or 'auto'")
    return int(value)


def _validate(original, pruned, dataset, masked_outputs, *, reference_device, latency_runs, label,
              input_shapes, expected_macs, expected_params) -> dict[str, Any]:
    check_structure(pruned, label)
    after, provider, session_after = run_model(pruned, dataset.inputs, reference_device, label)
    names = [o.name for o in pruned.graph.output]
    max_diff = check_equivalence(after, masked_outputs, names, f"{label} vs the masked proxy")
    before, _, session_before = run_model(original, dataset.inputs, reference_device, "original model")
    counted = count_graph(pruned, input_shapes)
    if counted.macs != expected_macs or counted.params != expected_params:
        raise ValidationFailedError(
            f"{label}: counted {counted.macs} MACs / {counted.params} params, the cost model predicted "
            f"{expected_macs} / {expected_params}"
        )
    fid = fidelity(after, before, dataset.labels)
    one = {k: v[:1] for k, v in dataset.inputs.items()}
    lat_before = measure_latency(session_before, one, runs=latency_runs)
    lat_after = measure_latency(session_after, one, runs=latency_runs)
    return {
        "provider": provider,
        "max_abs_diff": max_diff,
        "fidelity": asdict(fid),
        "latency_ms_before": lat_before.median_ms,
        "latency_ms_after": lat_after.median_ms,
        "latency_runs": latency_runs,
        "macs": counted.macs,
        "params": counted.params,
        "checks": ["onnx.checker(full)", "strict shape inference", f"onnxruntime ({provider})",
                   "equivalence with masked proxy", "MACs/params recount"],
    }
