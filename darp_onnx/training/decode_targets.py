"""Scores behind a decode: what distillation reads where the graph ends in ArgMax or TopK.

An export that decodes in the graph (a CTC recogniser's greedy ArgMax, a segmenter's per-pixel ArgMax, a
classifier that outputs its label) gives integer outputs, and integers carry no gradient: the search and
the fine-tune then learn from nothing, or only from a confidence beside them. trueocr's recogniser, pruned
data-free, read nothing in any line the original read exactly. The float tensors those ops decode are added
as distillation targets (`ProxyModel.add_outputs`); the written model keeps its own outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

DECODE_OPS = ("ArgMax", "ArgMin", "TopK")
MAX_TARGET_BYTES = 256 * 2**20  # the targets are held for every sample: a segmentation map may not fit
MIN_SAMPLES = 8  # fewer samples than this to fit the scores on: not worth it
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def decoded_scores(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], samples: int
                   ) -> tuple[list[str], int]:
    """The float tensors that ArgMax/ArgMin/TopK nodes of the main graph decode (when they are not graph
    outputs already), and how many of the `samples` samples their targets fit in MAX_TARGET_BYTES (`shapes`:
    per sample); none where fewer than MIN_SAMPLES fit."""
    outputs = {o.name for o in model.graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    names = [name for name in dict.fromkeys(node.input[0] for node in model.graph.node
                                            if node.op_type in DECODE_OPS and node.input)
             if name not in outputs and types.get(name, onnx.TensorProto.FLOAT) in FLOAT_TYPES]
    per_sample = sum(int(np.prod(shapes[n])) for n in names if n in shapes) * 4
    fit = samples if per_sample == 0 else min(samples, MAX_TARGET_BYTES // per_sample)
    return (names, fit) if names and fit >= min(samples, MIN_SAMPLES) else ([], samples)


def softmax_logits(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
    """Graph output -> the logits its Softmax normalises (through reshapes, transposes and casts), for the
    outputs a Softmax writes whose logits are class scores, [batch, classes] in `shapes` (at batch 1). Distilled
    as probabilities, a saturated softmax has no gradient (float32 rounds the other classes to 0); read as
    logits, probabilities give a nearly flat softmax: a tempo classifier of 256 classes kept the original's
    pick on 38% of held-out windows, 79% through its logits. Scores per position ([N, T, C], a recogniser) keep
    their probabilities, which the losses fit by MSE: through the logits the MSE weighed every class's logit
    alike (PP-OCRv4 rec, data-free: an error of 0.38-1.00 became 1.55-1.65)."""
    from darp_onnx.load.output_sources import output_sources
    from darp_onnx.training.synthetic_check import MOVES_VALUES

    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    producer = {name: node for node in model.graph.node for name in node.output}
    found = {}
    for output, (node, _) in zip(model.graph.output, output_sources(model, MOVES_VALUES), strict=True):
        logits = None if node is None or node.domain not in ("", "ai.onnx") else (
            node.input[0] if node.op_type == "Softmax" and node.input else _spelled_out_softmax(node, producer))
        shape = shapes.get(logits) if logits is not None else None
        if shape is not None and len(shape) == 2 and shape[1] > 1 and types.get(
                logits, onnx.TensorProto.FLOAT) in FLOAT_TYPES:
            found[output.name] = logits
    return found


def _spelled_out_softmax(node: onnx.NodeProto, producer: Mapping[str, onnx.NodeProto]) -> str | None:
    """The logits of Div(Exp(x), ReduceSum(Exp(x))), a softmax written out (jax2tf's magika: x is the logits
    less their maximum, the same distribution, the sum reshaped and broadcast); None for any other node."""
    if node.op_type != "Div" or len(node.input) != 2:
        return None
    exp, total = producer.get(node.input[0]), producer.get(node.input[1])
    while total is not None and total.op_type in ("Reshape", "Expand", "Unsqueeze", "Squeeze", "Identity", "Cast"):
        total = producer.get(total.input[0])  # jax2tf reshapes the sum and broadcasts it back
    if exp is None or exp.op_type != "Exp" or total is None or total.op_type != "ReduceSum":
        return None
    return exp.input[0] if total.input and total.input[0] == exp.output[0] else None
