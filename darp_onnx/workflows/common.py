"""Stages every workflow shares: open the input, settle the output path, check the written model
against the proxy it came from, save it. `prune` and `finetune` both compose these."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from darp_onnx.errors import OptionError, ValidationFailedError
from darp_onnx.load.io import load_model, same_file, save_model
from darp_onnx.load.order import out_of_order, sort_nodes
from darp_onnx.validation.checks import baseline_gaps, check_equivalence, check_structure, run_model


@dataclass(frozen=True)
class Source:
    """The input model and where it came from."""

    model: onnx.ModelProto
    name: str  # the path, or "<model>" for a ModelProto
    protect: tuple[str | os.PathLike, ...]  # paths an output must never overwrite (the input file)

    @property
    def from_object(self) -> bool:
        return not self.protect


def open_source(model_or_path: str | os.PathLike | onnx.ModelProto) -> Source:
    if isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
        if out_of_order(model.graph):  # sorted as load_model sorts a file, on a copy: the caller's stays as it is
            model = onnx.ModelProto()
            model.CopyFrom(model_or_path)
            sort_nodes(model.graph)
        return Source(model, "<model>", ())
    return Source(load_model(model_or_path), str(model_or_path), (model_or_path,))


def derived_path(path: str | os.PathLike, suffix: str) -> Path:
    """MODEL.onnx -> MODEL<suffix>.onnx beside it (suffix like '.pruned')."""
    path = Path(path)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    return path.with_name(stem + suffix + ".onnx")


def output_path(source: Source, output: str | os.PathLike | None, *, write: bool, force: bool,
                suffix: str) -> Path | None:
    """Where the result goes (None: not written), checked before any work: never the input, never an
    existing file without `force`."""
    if not write:
        return None
    if output is None and source.from_object:
        raise OptionError("output", "give an output path ({option}) when passing a model object")
    path = Path(output) if output is not None else derived_path(source.protect[0], suffix)
    if any(same_file(path, guarded) for guarded in source.protect):
        raise OptionError("output", f"{path}: is the input model; darp-onnx never overwrites its input, choose "
                                    "another output path")
    if path.exists() and not force:
        raise OptionError("force", f"{path}: already exists; pass {{option}} to overwrite it or choose another path")
    return path


@dataclass(frozen=True)
class WrittenCheck:
    max_abs_diff: float
    provider: str
    outputs: list[np.ndarray]  # onnxruntime's outputs of the written model
    session: object  # its onnxruntime session (for latency)


def check_written(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], expected: Sequence[np.ndarray], *,
                  device: str, label: str, against: str, micro: bool = False,
                  baseline: Sequence[float] | None = None) -> WrittenCheck:
    """ONNX checker and strict shape inference, then onnxruntime on `device` must reproduce `expected`
    (the outputs of `against`, the proxy the model was exported from). ValidationFailedError otherwise."""
    check_structure(model, label)
    actual, provider, session = run_model(model, inputs, device, label, micro=micro)
    names = [o.name for o in model.graph.output]
    try:
        max_diff = check_equivalence(actual, expected, names, f"{label} vs {against}", baseline=baseline)
    except ValidationFailedError:
        own = own_rounding(model, inputs, actual, device=device, label=label, micro=micro)
        known = [*(baseline or []), *[math.nan] * len(own)][: len(own)]
        tolerated = [max((v for v in pair if not math.isnan(v)), default=math.nan)
                     for pair in zip(known, own, strict=True)]
        max_diff = check_equivalence(actual, expected, names, f"{label} vs {against}", baseline=tolerated)
    return WrittenCheck(max_diff, provider, actual, session)


def own_rounding(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray], actual: Sequence[np.ndarray], *,
                 device: str, label: str, micro: bool) -> list[float]:
    """Per output, how far onnxruntime's own two evaluations of the written graph differ (with its fusions
    and without): float32 rounding at these weights, which no rewrite can be held below. A rewrite error is
    far larger. PicoDet's layout detector, fine-tuned on synthetic pictures, feeds ReLU6 layers behind
    BatchNorm scales of up to 290: its proxy and onnxruntime differed by 1.8e-3 on an output of size 6.6,
    onnxruntime's two evaluations by 8.8e-4 (and by 3e-3 on another)."""
    plain = run_model(model, inputs, device, label, micro=micro, optimized=False)[0]
    return baseline_gaps(plain, actual)


def save(model: onnx.ModelProto, path: Path | None, source: Source, *, force: bool) -> Path | None:
    """Atomic save (never over the input); nothing for `path` None."""
    if path is None:
        return None
    return save_model(model, path, force=force, protect=source.protect)
