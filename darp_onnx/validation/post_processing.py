"""The written model with its post-processing back in place (load.post_processing): checked as a whole.

The pruned network itself passed every check (equivalence with the masked proxy, fidelity on the tensors it hands
the post-processing). What is left to check is the joint: the whole graph passes the ONNX checks, onnxruntime
runs it, and its outputs have the original's names, types and ranks. Their values are not compared: the
post-processing's outputs (kept boxes, indices) change in length with any change of the scores before them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from darp_onnx.errors import ValidationFailedError, first_line
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.runtime.session import make_session
from darp_onnx.validation.checks import check_structure


def _run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], device: str) -> list[np.ndarray]:
    return make_session(model, device).run(None, dict(feeds))


def whole_feeds(original: onnx.ModelProto, network_feed: Mapping[str, np.ndarray],
                shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """One sample for every input of the whole model: the network's from its data, the others (thresholds and
    sizes only the post-processing reads) synthetic."""
    others = synthetic_inputs(original, batch=1, seed=seed, shapes=shapes)
    return {name: np.asarray(network_feed.get(name, value)) for name, value in others.items()}


def check_whole(whole: onnx.ModelProto, original: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *,
                device: str, label: str) -> list[str]:
    """ValidationFailedError where the whole written model fails the ONNX checks or onnxruntime, or its outputs
    differ in name, type or rank from the original's on `feeds`; returns one note per output whose size changed
    (e.g. 'output 'boxes': [12, 6] from the original, [9, 6] from the pruned model on the first sample')."""
    check_structure(whole, label)
    try:
        before = _run(original, feeds, device)
    except Exception:  # the original cannot run on these feeds either: only the checks above can be made
        return ["post-processing: the original does not run on one synthetic sample, so the written model was "
                "checked with onnx.checker only"]
    try:
        after = _run(whole, feeds, device)
    except Exception as exc:
        raise ValidationFailedError(f"{label}: onnxruntime fails to run it with its post-processing "
                                    f"({first_line(exc)})") from None
    notes = []
    for output, a, b in zip(original.graph.output, after, before, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.ndim != b.ndim:
            raise ValidationFailedError(
                f"{label}: output '{output.name}' after its post-processing is {a.dtype} of rank {a.ndim}, the "
                f"original's {b.dtype} of rank {b.ndim}")
        if a.shape != b.shape:
            notes.append(f"output '{output.name}': {list(b.shape)} from the original, {list(a.shape)} from the "
                         "pruned model on the first sample")
    return notes
