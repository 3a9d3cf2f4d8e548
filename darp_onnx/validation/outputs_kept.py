"""Fidelity output by output: the relative error of each output, how many of the original's positives
(values above 0.5 in an output of probabilities) the pruned model keeps, and how much its output still
varies from sample to sample.

The overall relative error sums the outputs' norms, so a large output hides a small one. A CenterNet table
detector pruned data-free kept an overall error of 0.66 while its cell heatmap lost every peak (0 above 0.3
on every page against 60-204 in the original): the background dominates a heatmap's norm. For outputs of
probabilities (sigmoid maps, masks, multi-label scores) the positives are what a user reads, so they are
compared as sets: F1 (Dice) of the elements above 0.5 in the original and in the pruned model.

An output that no longer depends on the input can still sit near the original's on average: a PP-OCRv6
recogniser pruned data-free said "blank" with probability 1 at every step for every picture (it read
nothing on 16 text lines) at a relative error of 0.255 and F1 0.96, since the original says mostly blank on
synthetic pictures too. The spread of the outputs around their mean over the samples, against the
original's, shows it: about 1 for a model that follows its input, 0 for a constant one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from darp_onnx.validation.images_out import psnr_db
from darp_onnx.validation.padded_ids import id_mismatch, is_ids

POSITIVE = 0.5  # a probability above this is a detection, a mask pixel, an active score
MIN_POSITIVES = 8  # fewer positives in the original's outputs say nothing about what is kept
MIN_SPREAD = 1e-3  # an original output whose spread over the samples is below this share of its size: not judged


@dataclass(frozen=True)
class OutputKept:
    name: str
    relative_error: float
    positives_kept: float | None  # F1 of the elements above POSITIVE; None: not probabilities, or too few
    variation_kept: float | None  # spread over the samples against the original's; None: it does not vary
    decisions_kept: float | None = None  # the worst share of the original's picks kept (`decisions_kept`)
    decisions_class: int | None = None  # whose picks: a class, or None for those other than the most frequent
    spread_error: float | None = None  # error against the original's spread over the samples (`error_over_spread`)


def relative_error(after: np.ndarray, before: np.ndarray) -> float:
    """Relative L2 error; for integer outputs (ids) the share that differ, padding left out (`padded_ids`)."""
    if is_ids(before) and is_ids(after) and np.shape(after) == np.shape(before) and np.size(before):
        return id_mismatch(after, before)
    a, b = np.asarray(after, np.float64), np.asarray(before, np.float64)
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-12)


def overall_error(after: Sequence[np.ndarray], before: Sequence[np.ndarray]) -> float:
    """One error over all outputs: the float outputs' summed L2 norms (a large output weighs more), or where
    every output is integer, their mean share of ids that differ."""
    floats = [(a, b) for a, b in zip(after, before, strict=False) if not is_ids(b)]
    if not floats:
        return float(np.mean([relative_error(a, b) for a, b in zip(after, before, strict=False)] or [0.0]))
    num = sum(float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64))) for a, b in floats)
    return num / max(sum(float(np.linalg.norm(np.asarray(b, np.float64))) for _, b in floats), 1e-12)


def is_probabilities(values: np.ndarray) -> bool:
    """Floats all within [0, 1] that are not all one value: a sigmoid or softmax output."""
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.floating) or v.size < 2 or not np.isfinite(v).all():
        return False
    return float(v.min()) >= 0.0 and float(v.max()) <= 1.0 and float(v.max()) > float(v.min())


def positives_kept(after: np.ndarray, before: np.ndarray) -> float | None:
    """F1 of the pruned model's positives against the original's (1: the same elements above 0.5, 0: none
    of them), and over the classes but the one that holds most positives where that F1 is lower (a CTC
    recogniser's blank, a segmenter's background: a PP-OCRv5 recogniser that read 0 of 60 lines kept F1 0.76,
    all of it blank, 0.00 on the characters); None where `before` is not probabilities or has fewer than
    MIN_POSITIVES positives, or is one Softmax per sample (`_class_rows`)."""
    if not is_probabilities(before) or np.shape(after) != np.shape(before) or _class_rows(np.asarray(before)):
        return None
    truth, found = np.asarray(before) > POSITIVE, np.asarray(after) > POSITIVE
    if int(truth.sum()) < MIN_POSITIVES:
        return None
    overall = _f1(truth, found)
    axis = class_axis(np.asarray(before))
    if axis is None:
        return overall
    truth, found = np.moveaxis(truth, axis, -1), np.moveaxis(found, axis, -1)
    counts = truth.reshape(-1, truth.shape[-1]).sum(axis=0)
    others = np.arange(len(counts)) != int(counts.argmax())
    if counts.max() <= counts.sum() / 2 or int(truth[..., others].sum()) < MIN_POSITIVES:
        return overall
    return min(overall, _f1(truth[..., others], found[..., others]))


def _class_rows(values: np.ndarray) -> bool:
    """One Softmax over classes per sample ([samples, classes]): its values above 0.5 are its confident top-1
    picks, which top-1 agreement judges. A tempo classifier over 256 BPM classes showed 'values above 0.5
    kept' beside its top-1 agreement, counted on the few samples it was sure of."""
    return values.ndim == 2 and class_axis(values) == 1


def _f1(truth: np.ndarray, found: np.ndarray) -> float:
    both = int(np.logical_and(truth, found).sum())
    return 2.0 * both / max(int(truth.sum()) + int(found.sum()), 1)


def is_softmax(values: np.ndarray) -> bool:
    """Probabilities that sum to 1 along the last axis or axis 1 (a Softmax over classes)."""
    return is_probabilities(values) and class_axis(np.asarray(values)) is not None


def class_axis(values: np.ndarray) -> int | None:
    """The axis (last or 1) along which the values sum to 1 (a Softmax over classes), or None."""
    for axis in dict.fromkeys((values.ndim - 1, 1)):
        if values.ndim >= 2 and values.shape[axis] > 1 and np.allclose(values.sum(axis=axis), 1.0, atol=1e-3):
            return axis
    return None


def as_probabilities(after: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both outputs as probabilities where the original's are log-probabilities (a LogSoftmax: values <= 0 whose
    exponentials sum to 1 along the last axis or axis 1), else as they are. hama's CTC phoneme recogniser
    outputs log-probabilities: pruned with data it read nothing (0.6% of its frames not blank, against 27.8%)
    while no check of picks or sequences looked at it."""
    b = np.asarray(before)
    if (b.ndim < 2 or not np.issubdtype(b.dtype, np.floating) or np.shape(after) != b.shape
            or not np.isfinite(b).all() or float(b.max()) > 1e-4):
        return after, before
    probabilities = np.exp(b.astype(np.float64))
    if class_axis(probabilities) is None:
        return after, before
    return np.exp(np.asarray(after, np.float64)), probabilities


NO_DECISIONS_KEPT = 0.25  # a Softmax output that keeps fewer than one in four of these picks keeps no useful signal
MAJOR_CLASS = 0.1  # a class the original picks at this share of the positions or more is also judged on its own


def decisions_kept(after: np.ndarray, before: np.ndarray) -> tuple[float, int | None] | None:
    """For a Softmax output, the worst share of the original's picks the pruned model makes too: over the picks
    of classes other than the one it picks most (a recogniser's characters, not its blank), and over each class
    it picks at MAJOR_CLASS of the positions or more (a two-class classifier that collapsed onto its rarer
    class). Returns (share, the class; None for the picks other than the most frequent class), or None where
    `before` is not a Softmax or no such set holds MIN_POSITIVES picks. A PP-OCRv6 recogniser fitted on 200
    text lines kept 13.5% of its character picks and read 0 of 60 fresh lines; a text-direction classifier
    fitted on lines half upside down said 'upside down' for 55 of 60 (the other class: 10-17% kept)."""
    b = np.asarray(before)
    axis = class_axis(b) if is_probabilities(b) else None
    if axis is None or np.shape(after) != b.shape:
        return None
    picks_b, picks_a = b.argmax(axis=axis).ravel(), np.asarray(after).argmax(axis=axis).ravel()
    counts = np.bincount(picks_b)
    sets = [(None, picks_b != counts.argmax())]
    sets += [(int(k), picks_b == k) for k in np.flatnonzero(counts >= MAJOR_CLASS * len(picks_b))]
    kept = [(float((picks_a[mask] == picks_b[mask]).mean()), k) for k, mask in sets if mask.sum() >= MIN_POSITIVES]
    return min(kept, key=lambda pair: pair[0]) if kept else None


BLANK_SHARE = 0.3  # a per-step Softmax whose most frequent pick fills this share of the steps: a CTC blank


def sequences_kept(after: np.ndarray, before: np.ndarray) -> float | None:
    """For a recogniser's per-step Softmax [samples, steps, classes] (or [samples, classes, steps]) whose most
    frequent pick is a blank (BLANK_SHARE of the steps or more: CTC), the share of samples whose greedy decode
    (picks, repeats merged, blanks dropped) the pruned model reads the same as the original; None otherwise.
    Per-step agreement counts the blanks: a PP-OCRv3 recogniser at 93.5% of its steps read 71% of 100 lines
    as the original did."""
    b, a = np.asarray(before), np.asarray(after)
    if b.ndim > 3 and b.shape == a.shape and class_axis(b) == b.ndim - 1:  # [N, steps, 1, classes]: micro-batched
        b, a = b.reshape(len(b), -1, b.shape[-1]), a.reshape(len(a), -1, a.shape[-1])
    axis = class_axis(b) if b.ndim == 3 and is_probabilities(b) else None
    if axis is None or np.shape(a) != b.shape:
        return None
    picks_b, picks_a = b.argmax(axis=axis), a.argmax(axis=axis)
    counts = np.bincount(picks_b.ravel())
    blank = int(counts.argmax())
    if counts[blank] < BLANK_SHARE * picks_b.size:
        return None
    same = [_greedy(a, blank) == _greedy(o, blank) for a, o in zip(picks_a, picks_b, strict=True)]
    return float(np.mean(same))


def _greedy(picks: np.ndarray, blank: int) -> list[int]:
    kept = np.ones(len(picks), dtype=bool)
    kept[1:] = picks[1:] != picks[:-1]
    return [int(p) for p in picks[kept] if p != blank]


def _with_spread(after: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Both outputs as [samples, values] float64 and the original's spread around its mean over the samples;
    None where they differ in shape, are not floats, or the original does not vary."""
    a, b = np.asarray(after), np.asarray(before)
    if a.shape != b.shape or a.ndim == 0 or len(b) < 2 or not np.issubdtype(b.dtype, np.floating):
        return None
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    spread = float(np.linalg.norm(b - b.mean(axis=0)))
    if not np.isfinite(spread) or spread <= MIN_SPREAD * float(np.linalg.norm(b)):
        return None
    return a, b, spread


def variation_kept(after: np.ndarray, before: np.ndarray) -> float | None:
    """The pruned output's spread around its mean over the samples (axis 0), over the original's."""
    found = _with_spread(after, before)
    if found is None:
        return None
    a, _, spread = found
    return float(np.linalg.norm(a - a.mean(axis=0))) / spread


def error_over_spread(after: np.ndarray, before: np.ndarray) -> float | None:
    """The error against the original's own spread around its mean over the samples: above 1, the original's
    mean output, one constant, would be closer than the pruned model. A face mesh's 468 landmarks (pixels, 25-175)
    moved by 0.21 of the eye distance at a relative error of 0.14, worse than the mean face mesh (0.12); the
    relative error is small because the mean position dominates the output's size. None where it does not vary."""
    found = _with_spread(after, before)
    if found is None:
        return None
    a, b, spread = found
    return float(np.linalg.norm(a - b)) / spread


def score_rows(before: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(axis, indices) of the slices within [0, 1] where an output packs them beside slices that are not
    (the first axis after the batch wider than 1, or the last): a detection head's class scores beside its
    box coordinates. YOLOv8's [N, 4 + 18, 2100] output, pruned data-free, kept its boxes (error 0.12 on
    photos) and lost every score (0.998, no detection left) at an error of 0.09 over the whole tensor. None
    where there is no such split."""
    b = np.asarray(before)
    if b.ndim < 3 or not np.issubdtype(b.dtype, np.floating) or not np.isfinite(b).all():
        return None
    first = next((a for a in range(1, b.ndim) if b.shape[a] > 1), 1)  # micro-batched outputs stack as [N, 1, ...]
    found = []
    for axis in dict.fromkeys((first, b.ndim - 1)):
        rows = np.moveaxis(b, axis, 0).reshape(b.shape[axis], -1)
        inside = (rows.min(axis=1) >= 0.0) & (rows.max(axis=1) <= 1.0)
        if inside.sum() >= 2 and (~inside).any():
            found.append((axis, np.flatnonzero(inside)))
    # the narrower axis is the one that packs fields (4 + 1 + classes); on the anchor axis of an undecoded YOLOX
    # output ([N, 3549, 6], small box offsets) some anchors fall within [0, 1] by chance
    return min(found, key=lambda split: b.shape[split[0]], default=None)


def _kept(name: str, a: np.ndarray, b: np.ndarray, judged: tuple[np.ndarray, np.ndarray] | None = None,
          scores: bool = True) -> OutputKept:
    """`judged`: the pair as probabilities, where the caller knows better than `as_probabilities` (logits);
    `scores`: the values may be probabilities (not a linear layer's)."""
    pa, pb = as_probabilities(a, b) if judged is None else judged
    picks = decisions_kept(pa, pb)
    # pixels in [0, 1] are no scores, nor a linear layer's values
    positives = None if psnr_db(a, b) is not None or not scores else positives_kept(pa, pb)
    return OutputKept(name, relative_error(a, b), positives, variation_kept(a, b),
                      None if picks is None else picks[0], None if picks is None else picks[1],
                      error_over_spread(a, b))


def outputs_kept(after: Sequence[np.ndarray], before: Sequence[np.ndarray],
                 names: Sequence[str] | None = None,
                 judged: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                 linear: Sequence[str] = ()) -> list[OutputKept]:
    """One row per output, and one more for the score slices of an output that packs them with others.
    `judged`: each pair as probabilities (see `_kept`); `linear`: outputs a linear layer writes, whose values
    are no probabilities (no positives counted)."""
    names = list(names) if names is not None else [f"output {i}" for i in range(len(before))]
    judged = list(judged) if judged is not None else [None] * len(before)
    rows = []
    for name, a, b, pair in zip(names, after, before, judged, strict=False):
        scores = name not in linear
        rows.append(_kept(name, a, b, pair, scores))
        split = score_rows(b) if np.shape(a) == np.shape(b) and scores else None
        if split is not None:
            axis, index = split
            label = f"{name} (values in [0, 1] on axis {axis})"
            rows.append(_kept(label, np.take(a, index, axis=axis), np.take(b, index, axis=axis)))
    return rows


def worst_error(rows: Sequence[OutputKept]) -> OutputKept | None:
    """The output (or score slices of one) furthest from the original's, where there are several rows."""
    return max(rows, key=lambda r: r.relative_error) if len(rows) > 1 else None


def fewest_positives(rows: Sequence[OutputKept]) -> OutputKept | None:
    """The output of probabilities whose positives are kept worst."""
    judged = [r for r in rows if r.positives_kept is not None]
    return min(judged, key=lambda r: r.positives_kept) if judged else None


def fewest_decisions(rows: Sequence[OutputKept]) -> OutputKept | None:
    """The Softmax output whose picks are kept worst."""
    judged = [r for r in rows if r.decisions_kept is not None]
    return min(judged, key=lambda r: r.decisions_kept) if judged else None


def least_variation(rows: Sequence[OutputKept]) -> OutputKept | None:
    """The output whose dependence on the input is lost most."""
    judged = [r for r in rows if r.variation_kept is not None]
    return min(judged, key=lambda r: r.variation_kept) if judged else None


def furthest_for_its_spread(rows: Sequence[OutputKept]) -> OutputKept | None:
    """The output whose error is largest against the original's spread over the samples."""
    judged = [r for r in rows if r.spread_error is not None]
    return max(judged, key=lambda r: r.spread_error) if judged else None
