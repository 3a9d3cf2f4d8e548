"""Sizes a graph reads at run time that its declared shapes fix, folded into constants for the analysis.

torch's TorchScript exporter with a dynamic batch writes `x.reshape(B, T, H)`, with H read from the hidden
states' shape, as Shape -> Gather(2) -> Unsqueeze -> Concat -> Reshape. H is the residual stream's width (256
in a reaction-fingerprint BERT), which pruning attention heads does not change, while the Reshape merges the
kept heads: every head group froze ("target element 2 does not follow the channel count"); the same model
exported with a fixed batch had all of them prunable. Here a Gather of a Shape whose picked dims are numbers
in the recorded shapes (onnx's inference on the model as given: a free batch or sequence stays a name, and
its reads stay run-time reads), not multiplied on its way (`_not_multiplied`), becomes a Constant, which the
analysis edits where it must follow a channel count. The written model reads the same numbers, now stored.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from darp_onnx.load.order import node_reads


def fold_static_dim_reads(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with each Gather of a Shape of fixed dims replaced by a Constant, and how many were;
    `model` itself where there is none."""
    dims = _fixed_dims(model.graph)
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node_reads(node):
            readers.setdefault(name, []).append(node)
    constants = _integer_constants(model.graph)
    found = {}
    for k, node in enumerate(model.graph.node):
        value = _read_value(node, producer, constants, dims)
        if value is not None and _not_multiplied(node.output[0], readers):
            found[k] = value
    if not found:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for k, value in found.items():
        node = out.graph.node[k]
        folded = helper.make_node("Constant", [], [node.output[0]], name=f"{node.name or node.output[0]}_fixed",
                                  value=numpy_helper.from_array(value, ""))
        out.graph.node[k].CopyFrom(folded)
    _drop_unread_shapes(out.graph)
    return out, len(found)


def _fixed_dims(graph: onnx.GraphProto) -> dict[str, list[int | None]]:
    """Per tensor with a recorded shape: each dim's number, None where it is a name or unknown."""
    found = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        ttype = value.type.tensor_type
        if value.type.HasField("tensor_type") and ttype.HasField("shape"):
            found[value.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                                 for d in ttype.shape.dim]
    return found


def _integer_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    declared = {v.name for v in graph.input}
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name not in declared
             and t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                    found[node.output[0]] = numpy_helper.to_array(a.t)
    return found


def _read_value(node: onnx.NodeProto, producer: dict, constants: dict, dims: dict) -> np.ndarray | None:
    """The int64 value a `Gather(Shape(x), indices)` computes, where x's picked dims are all fixed; else None."""
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
        return None
    shape = producer.get(node.input[0])
    indices = constants.get(node.input[1])
    if shape is None or shape.op_type != "Shape" or indices is None or shape.input[0] not in dims:
        return None
    if any(a.name == "axis" and a.i != 0 for a in node.attribute):
        return None
    read = dims[shape.input[0]]
    attrs = {a.name: a.i for a in shape.attribute}
    read = read[_bound(attrs.get("start", 0), len(read)):_bound(attrs.get("end", len(read)), len(read))]
    picked = [read[i] if -len(read) <= i < len(read) else None for i in np.asarray(indices).reshape(-1)]
    if not picked or any(p is None for p in picked):
        return None
    return np.array(picked, np.int64).reshape(np.shape(indices))


SIZE_ARITHMETIC = {"Unsqueeze", "Squeeze", "Cast", "Identity", "Div", "Add", "Sub", "Floor", "Ceil", "Max", "Min"}


def _not_multiplied(name: str, readers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Whether the read is never multiplied (followed through SIZE_ARITHMETIC to the nodes that use it): a
    product of sizes (a CRNN's C * H, flattened into the sequence's features) merges axes, which the analysis
    follows by the read's coefficient, and a folded number in it would be one it cannot edit (captcha and
    ddddocr CRNNs lost a group each). A quotient is kept: a head's width, H // heads, stays fixed as heads go."""
    stack, seen = [name], set()
    while stack:
        for node in readers.get(stack.pop(), []):
            if node.op_type == "Mul":
                return False
            if node.op_type in SIZE_ARITHMETIC and node.output[0] not in seen:
                seen.add(node.output[0])
                stack.append(node.output[0])
    return True


def _bound(index: int, rank: int) -> int:
    return min(max(index + rank if index < 0 else index, 0), rank)


def _drop_unread_shapes(graph: onnx.GraphProto) -> None:
    """Shape nodes nothing reads any more go (the analysis would still see them read a channel count)."""
    read = {i for n in graph.node for i in node_reads(n)} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Shape" and n.output[0] not in read]:
        graph.node.remove(node)
