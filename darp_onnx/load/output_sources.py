"""The node that computes each graph output, looked for through ops that only move values (Reshape, Identity,
...): what the output really is (a Sigmoid's scores, a Softmax's, an ArgMax's ids) decides how it is judged."""

from __future__ import annotations

from collections.abc import Collection

import onnx


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
