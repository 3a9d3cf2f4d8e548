"""Checks every written model passes: checker, strict shape inference, onnxruntime, equivalence with
the masked proxy, fidelity to the original, latency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import shape_inference

from darp_onnx.errors import BadInputError, DarpError, ValidationFailedError, first_line
from darp_onnx.load.output_sources import MOVES, normalised_outputs, output_sources
from darp_onnx.runtime.session import make_session, session_provider
from darp_onnx.training.synthetic_check import class_heads
from darp_onnx.validation.images_out import worst_picture
from darp_onnx.validation.nonfinite import blank_where_reference_nonfinite
from darp_onnx.validation.outputs_kept import (
    as_probabilities,
    class_axis,
    fewest_decisions,
    fewest_positives,
    furthest_for_its_spread,
    is_softmax,
    least_variation,
    outputs_kept,
    overall_error,
    sequences_kept,
    worst_error,
)
from darp_onnx.validation.padded_ids import id_agreement, rows_alike

CTC_READING = "picks per step, repeats merged, its most frequent class dropped as a blank"
IDS_READING = "the ids at every position, the padding left out"
ID_MOVES = MOVES  # ids stay ids
EQUIVALENCE_ATOL = 1e-4
EQUIVALENCE_RTOL = 1e-3
BASELINE_FACTOR = 4.0


def check_structure(model: onnx.ModelProto, label: str) -> None:
    """onnx.checker (full) and strict shape inference; any failure is a ValidationFailedError."""
    try:
        onnx.checker.check_model(model, full_check=True)
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ValidationFailedError(f"{label}: fails the ONNX checks ({first_line(exc)})") from None


def max_abs_diffs(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> list[float]:
    return [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64)))) if np.size(e) else 0.0
            for a, e in zip(actual, expected, strict=False)]


def baseline_gaps(runtime: Sequence[np.ndarray], proxy: Sequence[np.ndarray]) -> list[float]:
    """Per output, how far onnxruntime and the proxy already differ on the original model (float32 rounding of
    large intermediate values, e.g. a softmax over sums of thousands of products); nan where not comparable."""
    gaps = []
    for r, p in zip(runtime, proxy, strict=False):
        r64, p64 = np.asarray(r, np.float64), np.asarray(p, np.float64)
        ok = r64.shape == p64.shape and r64.size and np.isfinite(r64).all() and np.isfinite(p64).all()
        gaps.append(float(np.max(np.abs(r64 - p64))) if ok else float("nan"))
    return gaps


def check_equivalence(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], names: Sequence[str],
                      label: str, atol: float = EQUIVALENCE_ATOL, rtol: float = EQUIVALENCE_RTOL,
                      baseline: Sequence[float] | None = None) -> float:
    """Outputs agree within tolerance, else a ValidationFailedError naming the output and the gap. `atol`
    counts per unit of the output's largest magnitude (at least 1): float32 rounding grows with the values
    a layer carries (an LSTM cell state at 3.5 differs by 1e-4 where an exact rewrite is compared). `baseline`
    (per output, see `baseline_gaps`): the gap the original model already shows; BASELINE_FACTOR times it is
    tolerated too, so a rewrite is held to the exactness of the proxy it came from, not beyond."""
    worst = 0.0
    actual, expected = blank_where_reference_nonfinite(actual, expected)
    for index, (name, a, e) in enumerate(zip(names, actual, expected, strict=False)):
        a64, e64 = np.asarray(a, np.float64), np.asarray(e, np.float64)
        if a64.shape != e64.shape:
            raise ValidationFailedError(f"{label}: output '{name}' has shape {a64.shape}, expected {e64.shape}")
        if not np.isfinite(a64).all():
            raise ValidationFailedError(f"{label}: output '{name}' contains NaN or Inf")
        diff = float(np.max(np.abs(a64 - e64))) if a64.size else 0.0
        worst = max(worst, diff)
        scale = max(1.0, float(np.max(np.abs(e64)))) if e64.size and np.isfinite(e64).all() else 1.0
        gap = baseline[index] if baseline is not None and index < len(baseline) else float("nan")
        floor = BASELINE_FACTOR * gap if np.isfinite(gap) else 0.0
        if not np.allclose(a64, e64, atol=max(atol * scale, floor), rtol=rtol):
            raise ValidationFailedError(
                f"{label}: output '{name}' differs by up to {diff:.3g} (tolerance atol {atol:g} x {scale:.3g}, "
                f"rtol {rtol:g}" + (f"; the original model's proxy differs by {gap:.3g}" if floor else "") + ")"
            )
    return worst


@dataclass
class Fidelity:
    top1_agreement: float | None
    relative_error: float
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    worst_output: str | None = None  # with several outputs, the one furthest from the original's
    worst_output_error: float | None = None
    positives_output: str | None = None  # the output of probabilities whose positives are kept worst
    positives_kept: float | None = None  # F1 of its elements above 0.5 against the original's (outputs_kept)
    least_varying_output: str | None = None  # the output whose spread over the samples shrank most
    variation_kept: float | None = None  # its spread against the original's (1: follows the input, 0: constant)
    top1_output: str | None = None  # the output top-1 agreement and accuracy are measured on
    decisions_output: str | None = None  # the Softmax output whose picks are kept worst
    decisions_kept: float | None = None  # the share of them kept (outputs_kept.decisions_kept)
    decisions_class: int | None = None  # the class whose picks those are; None: all but the most frequent
    spread_output: str | None = None  # the output furthest from the original's for its spread over the samples
    spread_error: float | None = None  # its error over that spread (above 1: the original's mean would be closer)
    sequences_output: str | None = None  # a recogniser's per-step output (CTC) whose decoded sequences are compared
    sequences_kept: float | None = None  # the share of samples whose sequence reads as the original's
    sequences_read: str | None = None  # how the sequences are read (CTC_READING or IDS_READING)
    picture_output: str | None = None  # the colour-picture output furthest from the original's (`images_out`)
    picture_psnr_db: float | None = None  # its PSNR against the original's, in dB


def _class_scores(values: np.ndarray) -> bool:
    """[samples, classes] floats, not unit-length embeddings (an image-copy detector's L2-normalised
    descriptor read as class scores gave '31% top-1 agreement', which means nothing)."""
    if values.ndim != 2 or values.shape[1] < 2 or not np.issubdtype(values.dtype, np.floating):
        return False
    norms = np.linalg.norm(np.asarray(values, np.float64), axis=1)
    return not (len(norms) and np.allclose(norms, 1.0, atol=1e-3) and (values < 0).any())


def class_output(before: Sequence[np.ndarray], first_is_classes: bool = True) -> int | None:
    """Which output holds the class scores: the first [samples, classes] output of probabilities, else the first
    output where it looks like class scores (`first_is_classes`: `fixed_classes`). MTCNN's ONet outputs box
    offsets [N, 4] first and face probabilities [N, 2] last: its 'top-1 agreement' was the box offsets'."""
    scores = [i for i, values in enumerate(before) if _class_scores(np.asarray(values))]
    softmax = [i for i in scores if is_softmax(before[i])]
    if softmax:
        return softmax[0]
    return 0 if first_is_classes and 0 in scores else None


def fixed_classes(model: onnx.ModelProto) -> bool:
    """False when the first output's last axis is declared free in a [samples, scores] or per-sample [scores]
    output: a sequence (attacut's per-character scores [seq_len], stacked per sample, read as classes gave a
    meaningless top-1 agreement); or when a normalisation writes it (`normalised_outputs`: an embedding)."""
    outputs = model.graph.output
    if not outputs:
        return True
    dims = outputs[0].type.tensor_type.shape.dim
    return not (len(dims) in (1, 2) and dims[-1].HasField("dim_param")) and \
        outputs[0].name not in normalised_outputs(model)


def label_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs that an ArgMax/ArgMin computes (through ops that only move or cast values): class ids the
    graph decodes itself, where top-1 agreement is their share of equal ids (an ALBERT tagger's tag ids were
    judged by a relative error of 0.44, 'ids' 1 apart counted as near; 76% of its tags agreed)."""
    sources = output_sources(model, ID_MOVES)
    return [output.name for output, (node, _) in zip(model.graph.output, sources, strict=True)
            if node is not None and node.op_type in ("ArgMax", "ArgMin")]


def logit_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs a linear layer writes (`class_heads`: MatMul/Gemm and its bias Add, the last axis kept last):
    per-step class scores left without their Softmax (chineseocr_lite's CRNN, [steps, N, 5531] raw logits: its
    pruned copy read 'ttt' for 'task 68' with no check of its picks)."""
    return [output.name for output, head in zip(model.graph.output, class_heads(model), strict=True)
            if head is not None and not head.softmax and head.axis == -1]


def _judged(a: np.ndarray, b: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray]:
    """The pair as probabilities where it is log-probabilities, or per-step logits (softmax over the last axis)."""
    a, b = as_probabilities(a, b)
    if not logits or np.ndim(b) < 3 or np.shape(a) != np.shape(b) or not np.issubdtype(np.asarray(b).dtype,
                                                                                    np.floating):
        return a, b
    if is_softmax(b) or not np.isfinite(b).all():
        return a, b
    return _softmax(np.asarray(a, np.float64)), _softmax(np.asarray(b, np.float64))


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _top1(after: Sequence[np.ndarray], before: Sequence[np.ndarray], names: Sequence[str], classes: bool,
          ids: Sequence[str]) -> tuple[int, np.ndarray, np.ndarray] | None:
    """(output index, pruned picks, original picks) of the output top-1 agreement is measured on: the class
    scores (`class_output`), else the first Softmax output with more axes (a recogniser's [N, steps, classes]:
    one pick per step), else the first output of decoded ids (`label_outputs`)."""
    index = class_output(before, classes)
    if index is not None:
        return index, np.asarray(after[index]).argmax(1), np.asarray(before[index]).argmax(1)
    index = next((i for i, b in enumerate(before) if np.ndim(b) >= 3 and is_softmax(b)
                  and np.shape(after[i]) == np.shape(b)), None)
    if index is not None:
        axis = class_axis(np.asarray(before[index]))
        return index, np.asarray(after[index]).argmax(axis), np.asarray(before[index]).argmax(axis)
    index = next((i for i, name in enumerate(names) if name in ids and np.shape(after[i]) == np.shape(before[i])),
                 None)
    return None if index is None else (index, np.asarray(after[index]), np.asarray(before[index]))


def fidelity(after: Sequence[np.ndarray], before: Sequence[np.ndarray],
             labels: np.ndarray | None = None, names: Sequence[str] | None = None,
             classes: bool = True, ids: Sequence[str] = (), logits: Sequence[str] = (),
             linear: Sequence[str] = ()) -> Fidelity:
    """Closeness to the original: relative L2 error over all outputs, top-1 agreement (and accuracy with
    labels) on the class scores (`class_output`; `classes`: the first output may hold them) or else on the
    ids an ArgMax output decodes (`ids`: `label_outputs`), and output by output the worst error, the
    positives kept (not in `linear` outputs: `linear_outputs`) and the spread over the samples kept
    (`outputs_kept`)."""
    names = list(names) if names is not None else [f"output {i}" for i in range(len(before))]
    after, before = blank_where_reference_nonfinite(after, before)
    for name, a in zip(names, after, strict=False):
        if np.issubdtype(np.asarray(a).dtype, np.floating) and not np.isfinite(a).all():
            raise ValidationFailedError(f"the pruned model's output '{name}' is NaN or infinite where the "
                                        "original's is a number")
    agreement = acc_b = acc_a = top1 = None
    judged = [_judged(a, b, name in logits) for name, a, b in zip(names, after, before, strict=False)]
    read = next(((name, kept, CTC_READING) for name, (a, b) in zip(names, judged, strict=False)
                 if (kept := sequences_kept(a, b)) is not None), (None, None, None))
    picked = _top1([a for a, _ in judged], [b for _, b in judged], names, classes, ids)
    if picked is not None:
        index, picks_a, picks_b = picked
        top1 = names[index]
        decoded = top1 in ids  # ids the graph decodes: padding left out (`padded_ids`)
        agreement = id_agreement(picks_a, picks_b) if decoded else float((picks_a == picks_b).mean())
        if decoded and read[0] is None and (alike := rows_alike(picks_a, picks_b)) is not None:
            read = (top1, alike, IDS_READING)
        if labels is not None and picks_b.shape == np.shape(labels):
            acc_b = float((picks_b == labels).mean())
            acc_a = float((picks_a == labels).mean())
    rows = outputs_kept(after, before, names, judged, linear)
    picture = worst_picture(names, after, before)
    worst, fewest, flat = worst_error(rows), fewest_positives(rows), least_variation(rows)
    picks, far = fewest_decisions(rows), furthest_for_its_spread(rows)
    return Fidelity(agreement, overall_error(after, before), acc_b, acc_a,
                    worst_output=None if worst is None else worst.name,
                    worst_output_error=None if worst is None else worst.relative_error,
                    positives_output=None if fewest is None else fewest.name,
                    positives_kept=None if fewest is None else fewest.positives_kept,
                    least_varying_output=None if flat is None else flat.name,
                    variation_kept=None if flat is None else flat.variation_kept, top1_output=top1,
                    decisions_output=None if picks is None else picks.name,
                    decisions_kept=None if picks is None else picks.decisions_kept,
                    decisions_class=None if picks is None else picks.decisions_class,
                    spread_output=None if far is None else far.name,
                    spread_error=None if far is None else far.spread_error,
                    sequences_output=read[0], sequences_kept=read[1], sequences_read=read[2],
                    picture_output=picture[0], picture_psnr_db=picture[1])


# onnxruntime's batches: on a CPU a sample costs more in larger batches (PP-OCRv4's detector at 320x320: 23 ms
# at batch 8, 31 at 64; benchmarks/pass_batch.py); a GPU wants larger ones.
CPU_RUN_BATCH = 8
GPU_RUN_BATCH = 64


def run_batches(session, feeds: Mapping[str, np.ndarray], label: str,
                error: type[DarpError] = ValidationFailedError, batch_size: int | None = None,
                micro: bool = False) -> list[np.ndarray]:
    """All outputs of `session` over `feeds`, run in batches (CPU_RUN_BATCH or GPU_RUN_BATCH unless given); a
    failure raises `error` naming `label`. `micro`: `feeds[k][i]` is one whole feed (a model that is not
    batch-major); outputs are stacked."""
    if batch_size is None:
        batch_size = GPU_RUN_BATCH if session_provider(session) == "CUDAExecutionProvider" else CPU_RUN_BATCH
    total = len(next(iter(feeds.values())))
    parts = []
    try:
        if micro:
            parts = [[o[None] for o in session.run(None, {k: np.asarray(v[i]) for k, v in feeds.items()})]
                     for i in range(total)]
        else:
            for start in range(0, total, batch_size):
                parts.append(session.run(None, {k: v[start : start + batch_size] for k, v in feeds.items()}))
    except Exception as exc:
        raise error(f"{label}: onnxruntime fails to run it ({first_line(exc)})") from None
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def run_model(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], device: str = "cpu",
              label: str = "model", batch_size: int | None = None, micro: bool = False,
              optimized: bool = True) -> tuple[list[np.ndarray], str, object]:
    """Outputs over `feeds` (in batches), the provider used and the session (`optimized`: see make_session)."""
    try:
        session = make_session(model, device, optimized=optimized)
    except BadInputError:
        raise
    except Exception as exc:
        raise ValidationFailedError(f"{label}: onnxruntime cannot load it ({first_line(exc)})") from None
    return (run_batches(session, feeds, label, batch_size=batch_size, micro=micro), session_provider(session),
            session)


def as_dict(obj) -> dict:
    return asdict(obj)
