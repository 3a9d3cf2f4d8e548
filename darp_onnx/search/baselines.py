"""Baseline unit scores for the same budget extraction: L1 magnitude, BatchNorm scale, random.

The baselines score channels only: a residual branch gets NaN, "no score of its own". The rank-order
extraction never drops it before any channel (NaN ranks as +inf there); the latency-aware extraction
values it at the importance of the channels it holds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from darp_onnx.groups import ChannelAnalysis

ScoreFn = Callable[[onnx.ModelProto, ChannelAnalysis, int], dict[int, np.ndarray]]


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}


def _unit_sums(analysis: ChannelAnalysis, arrays: dict[str, np.ndarray], tensors: set[str] | None = None
               ) -> dict[int, np.ndarray]:
    """Sum of |w| per unit over every weight axis map that covers it (mean over the slice's elements)."""
    sums = {g.id: np.zeros(g.size) for g in analysis.prunable()}
    for (name, axis), amap in analysis.axis_maps.items():
        if name not in arrays or (tensors is not None and name not in tensors):
            continue
        w = np.abs(arrays[name])
        if w.ndim == 0:
            continue
        per_channel = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).mean(axis=1)
        for seg in amap.segments:
            if seg.group not in sums:
                continue
            for unit in range(seg.start, seg.stop):
                sums[seg.group][unit] += per_channel[amap.unit_channels(seg.offset + unit - seg.start)].mean()
    return sums


def finish_scores(analysis: ChannelAnalysis, scores: dict[int, np.ndarray], normalise: bool) -> dict[int, np.ndarray]:
    for group in analysis.prunable():
        if group.unit.droppable:  # no weights of its own
            scores[group.id] = np.full(group.size, np.nan)
        elif normalise:
            mean = scores[group.id].mean()
            scores[group.id] = scores[group.id] / mean if mean > 0 else scores[group.id]
    return scores


def l1_scores(model: onnx.ModelProto, analysis: ChannelAnalysis, seed: int = 0) -> dict[int, np.ndarray]:
    """Group L1 magnitude (Torch-Pruning style: summed over the group's members, mean-normalised)."""
    return finish_scores(analysis, _unit_sums(analysis, _weights(model)), normalise=True)


def bn_scores(model: onnx.ModelProto, analysis: ChannelAnalysis, seed: int = 0) -> dict[int, np.ndarray]:
    """|gamma| of the BatchNormalization layers on each group (network slimming); L1 where none."""
    arrays = _weights(model)
    gammas = {n.input[1] for n in model.graph.node if n.op_type == "BatchNormalization"}
    bn = _unit_sums(analysis, arrays, gammas)
    l1 = _unit_sums(analysis, arrays)
    scores = {}
    for gid, values in bn.items():
        scores[gid] = values if values.any() else l1[gid] / max(l1[gid].mean(), 1e-12)
    return finish_scores(analysis, scores, normalise=False)


def random_scores(model: onnx.ModelProto, analysis: ChannelAnalysis, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return finish_scores(analysis, {g.id: rng.random(g.size) for g in analysis.prunable()}, normalise=False)


BASELINES: dict[str, ScoreFn] = {"l1": l1_scores, "bn": bn_scores, "random": random_scores}
