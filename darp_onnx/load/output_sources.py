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
