"""The classifier head: find the final projection feeding the first output, or replace it with a new width.

The search walks back from the first graph output through width-preserving nodes (Identity, Reshape,
Flatten, Softmax, an Add of a bias, ...) to a Gemm, or a MatMul with an initializer weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from darp_onnx.cost.count import int_attr
from darp_onnx.errors import BadInputError

# Nodes the walk passes through: they keep the class axis as it is.
_PASS_THROUGH = {"Identity", "Dropout", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Softmax",
                 "LogSoftmax", "Sigmoid"}
_BIAS_OPS = {"Add", "Sub"}


@dataclass(frozen=True)
class Head:
    """The final projection: its node, weight and (optional) bias initializers and output width."""

    node: str
    op_type: str
    weight: str
    bias: str | None  # a Gemm's C input, or the constant of the Add that follows a MatMul
    bias_node: str | None  # the node that reads the bias
    width: int
    fan_in: int
    path: tuple[str, ...]  # tensors from the projection's output to the graph output
    reshapes: tuple[str, ...] = ()  # Reshape nodes on that path


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def find_head(model: onnx.ModelProto) -> Head:
    """The classifier projection of the first output; a BadInputError naming the node where the walk
    stops when there is none."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = _producers(graph)
    if not graph.output:
        raise BadInputError("the model has no outputs, so it has no classifier head")
    tensor = graph.output[0].name
    path: list[str] = [tensor]
    bias: str | None = None
    bias_node: str | None = None
    reshapes: list[str] = []
    while True:
        node = producers.get(tensor)
        if node is None:
            raise BadInputError(
                f"no classifier projection (Gemm, or MatMul with a weight initializer) feeds output "
                f"'{graph.output[0].name}': the walk back reached graph input or constant '{tensor}'"
            )
        if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in inits:
            if int_attr(node, "transA", 0):
                break
            weight = numpy_helper.to_array(inits[node.input[1]])
            trans_b = int_attr(node, "transB", 0)
            width, fan_in = weight.shape if trans_b else weight.shape[::-1]
            gemm_bias = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
            if gemm_bias is not None and bias is not None:
                break
            bias_name = gemm_bias or bias
            return Head(node.name, "Gemm", node.input[1], bias_name, node.name if gemm_bias else bias_node,
                        int(width), int(fan_in), tuple(reversed(path)), tuple(reshapes))
        if node.op_type == "MatMul" and node.input[1] in inits:
            weight = numpy_helper.to_array(inits[node.input[1]])
            if weight.ndim != 2:
                break
            return Head(node.name, "MatMul", node.input[1], bias, bias_node, int(weight.shape[1]),
                        int(weight.shape[0]), tuple(reversed(path)), tuple(reshapes))
        if node.op_type in _BIAS_OPS and bias is None and node.input[1] in inits:
            bias, bias_node, tensor = node.input[1], node.name, node.input[0]
        elif node.op_type == "Add" and bias is None and node.input[0] in inits:
            bias, bias_node, tensor = node.input[0], node.name, node.input[1]
        elif node.op_type in _PASS_THROUGH:
            tensor = node.input[0]
            if node.op_type == "Reshape":
                reshapes.append(node.name)
        else:
            break
        path.append(tensor)
    raise BadInputError(
        f"no classifier projection found for output '{graph.output[0].name}': the walk back stopped at node "
        f"'{node.name}' ({node.op_type}); --new-head and --freeze-backbone need a final Gemm, or a MatMul "
        "with a 2-D weight initializer, reached through Identity/Reshape/Flatten/Softmax or a bias Add"
    )


def linear_init(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> np.ndarray:
    """torch nn.Linear's default: kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the
    same bound serves the bias."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul(bound).float().numpy()


def _unique_name(graph: onnx.GraphProto, base: str) -> str:
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _set_initializer(model: onnx.ModelProto, old: str, array: np.ndarray, reader: str) -> None:
    """Put `array` where initializer `old` was; under a new name when other nodes read `old` too."""
    graph = model.graph
    init = next(t for t in graph.initializer if t.name == old)
    readers = [n for n in graph.node if old in n.input]
    dtype = numpy_helper.to_array(init).dtype
    if len(readers) == 1:
        init.CopyFrom(numpy_helper.from_array(array.astype(dtype), old))
        return
    name = _unique_name(graph, f"{old}_new_head")
    graph.initializer.append(numpy_helper.from_array(array.astype(dtype), name))
    node = next(n for n in readers if n.name == reader)
    for i, value in enumerate(node.input):
        if value == old:
            node.input[i] = name


def replace_head(model: onnx.ModelProto, num_classes: int, seed: int = 0) -> onnx.ModelProto:
    """A copy of `model` whose classifier projection has `num_classes` outputs, freshly initialised as
    torch's nn.Linear; the first output's declared class dim becomes `num_classes`."""
    if num_classes < 2:
        raise BadInputError(f"--new-head {num_classes}: a classifier head needs at least 2 classes")
    head = find_head(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    node = next(n for n in graph.node if n.name == head.node)
    generator = torch.Generator().manual_seed(seed)
    if head.op_type == "Gemm" and int_attr(node, "transB", 0):
        weight = linear_init((num_classes, head.fan_in), head.fan_in, generator)
    else:
        weight = linear_init((head.fan_in, num_classes), head.fan_in, generator)
    _set_initializer(out, head.weight, weight, head.node)
    if head.bias is not None:
        old = numpy_helper.to_array(next(t for t in graph.initializer if t.name == head.bias))
        if old.size == head.width:
            shape = (*old.shape[:-1], num_classes) if old.ndim else (num_classes,)
            bias = linear_init(shape, head.fan_in, generator)
            _set_initializer(out, head.bias, bias, head.bias_node or head.node)
        elif old.size != 1:
            raise BadInputError(
                f"head bias '{head.bias}' of node '{head.bias_node}' has shape {old.shape}, not one value "
                f"per class ({head.width}); cannot resize it"
            )
    for name in head.reshapes:
        _fix_reshape(out, next(n for n in graph.node if n.name == name), head.width, num_classes)
    _fix_shapes(out, head, num_classes)
    return out


def _fix_reshape(model: onnx.ModelProto, node: onnx.NodeProto, width: int, num_classes: int) -> None:
    """A Reshape on the head's path whose constant target shape spells out the old width gets the new one."""
    init = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
    if init is None:
        return
    shape = numpy_helper.to_array(init).copy()
    if shape.ndim == 1 and len(shape) and shape[-1] == width:
        shape[-1] = num_classes
        _set_initializer(model, node.input[1], shape, node.name)


def _fix_shapes(model: onnx.ModelProto, head: Head, num_classes: int) -> None:
    """Forget inferred shapes along the head's path; the first output's last dim becomes the new width."""
    graph = model.graph
    stale = set(head.path) | {head.weight, head.bias}
    stale |= {n.input[1] for n in graph.node if n.name in head.reshapes}
    keep = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    output = graph.output[0]
    dims = output.type.tensor_type.shape.dim
    if len(dims) and dims[-1].HasField("dim_value") and dims[-1].dim_value == head.width:
        dims[-1].dim_value = num_classes
    elif len(dims):
        output.type.tensor_type.ClearField("shape")
