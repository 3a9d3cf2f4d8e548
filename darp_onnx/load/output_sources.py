"""The node that computes each graph output, looked for through ops that only move values (Reshape, Identity,
...): what the output really is (a Sigmoid's scores, a Softmax's, an ArgMax's ids) decides how it is judged."""

from __future__ import annotations

from collections.abc import Collection

import onnx

MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Cast"}  # ops that only move values

def output_sources(model: onnx.ModelProto, through: Collection[str]) -> list[tuple[onnx.NodeProto | None, set[str]]]:
    """Per graph output: the first node behind it that is not one of `through` (None: a graph input or a
    constant), and the `through` ops passed on the way."""
    producer = {name: node for node in model.graph.node for name in node.output}
    found = []
    for output in model.graph.output:
        node, passed = producer.get(output.name), set()
        while node is not None and node.op_type in through and node.input:
            passed.add(node.op_type)
            node = producer.get(node.input[0])
        found.append((node, passed))
    return found


LINEAR_OPS = {"Gemm", "MatMul", "Conv", "ConvTranspose"}


def linear_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs a linear layer writes (Gemm, MatMul, Conv, or its bias Add; through ops that only move
    values): regressions, never probabilities, even where their values lie in [0, 1]. MTCNN ONet's 10 landmark
    coordinates (a Gemm, normalised to the crop) were reported as 'values above 0.5 kept (F1) 0.98'."""
    producer = {name: node for node in model.graph.node for name in node.output}
    found = []
    for output, (node, _) in zip(model.graph.output, output_sources(model, MOVES), strict=True):
        if node is not None and node.op_type == "Add":
            node = next((producer[i] for i in node.input if i in producer and producer[i].op_type in LINEAR_OPS),
                        node)
        if node is not None and node.op_type in LINEAR_OPS:
            found.append(output.name)
    return found


NORMALISATIONS = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
                  "GroupNormalization", "InstanceNormalization", "LpNormalization"}
PICKS = {"Gather", "Slice"}  # a transformer's [CLS] row, taken from the normalised hidden states


def normalised_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs a normalisation writes (its scale and shift by constants, and ops that move or pick values,
    passed): hidden states and embeddings, never class scores. A reaction-fingerprint BERT's 256 [CLS] values,
    a decomposed LayerNorm's Add(Mul(Div(Sub(x, mean), std))), were reported as 'top-1 agreement 25%'."""
    producer = {name: node for node in model.graph.node for name in node.output}
    stored = {t.name for t in model.graph.initializer} | {
        n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    found = []
    for output, (node, _) in zip(model.graph.output, output_sources(model, MOVES | PICKS), strict=True):
        while node is not None and node.op_type in ("Add", "Mul"):  # the shift and scale by constants
            computed = [i for i in node.input if i not in stored]
            if len(computed) != 1 or len(node.input) != 2:
                break
            node = producer.get(computed[0])
        if node is not None and (node.op_type in NORMALISATIONS or _divided_by_computed(node, producer, stored)):
            found.append(output.name)
    return found


def _divided_by_computed(node: onnx.NodeProto, producer: dict, stored: set[str]) -> bool:
    """A Div by a divisor computed at run time (a decomposed LayerNorm, an L2 normalisation), not of an Exp (a
    decomposed Softmax: jax2tf's magika) and not by a constant (a temperature)."""
    if node.op_type != "Div" or len(node.input) != 2 or node.input[1] in stored:
        return False
    numerator = producer.get(node.input[0])
    return numerator is None or numerator.op_type != "Exp"
