"""The input normalisation a graph does itself: the per-channel affine ops its image input meets first.

Exports often keep the caller's preprocessing in the graph (`Div` by 255, `Sub` the mean and `Mul` by
1/std, per channel, sometimes behind a Cast or an NHWC-to-NCHW Transpose). What the graph does there says
which pixel range the caller feeds (`training.pictures`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from darp_onnx.errors import BadInputError
from darp_onnx.load.constants import constant_node_value

AFFINE_OPS = ("Sub", "Add", "Mul", "Div")
PASS_OPS = ("Cast", "Identity")


def graph_normalisation(model: onnx.ModelProto, name: str, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) per channel of the elementwise affine ops with constant operands that input `name`
    passes through first (Sub/Add/Mul/Div, through Cast/Identity/Transpose), when they change the values;
    None when it meets another op first or they are the identity."""
    consts = _ConstantLookup(model)
    scale, offset = np.ones(1), np.zeros(1)
    tensor, changed = name, False
    while True:
        readers = [n for n in model.graph.node if tensor in n.input]
        if len(readers) != 1:
            break
        node = readers[0]
        if node.op_type in PASS_OPS or node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [3, 2, 1, 0])
            axis = perm.index(axis) if node.op_type == "Transpose" else axis
            tensor = node.output[0]
            continue
        step = _affine_step(node, tensor, consts, axis)
        if step is None:
            break
        scale, offset = scale * step[0], offset * step[0] + step[1]
        tensor, changed = node.output[0], True
    if not changed or (np.allclose(scale, 1) and np.allclose(offset, 0)):
        return None
    return scale, offset


class _ConstantLookup:
    """Values of initializers and Constant-node outputs, converted only when asked for."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.constant_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}

    def get(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        if name in self.constant_nodes:
            try:
                return constant_node_value(self.constant_nodes[name], "model")[0]
            except BadInputError:  # an attribute form it does not read: not a normalisation to follow
                return None
        return None


def _affine_step(node: onnx.NodeProto, tensor: str, consts: _ConstantLookup,
                 axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) of one Sub/Add/Mul/Div whose other operand is a per-channel constant."""
    if node.op_type not in AFFINE_OPS or len(node.input) != 2:
        return None
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    value = consts.get(other)
    if value is None:
        return None
    per_channel = _per_channel(np.asarray(value, np.float64), axis)
    if per_channel is None:
        return None
    first = node.input[0] == tensor
    if node.op_type == "Add":
        return np.ones_like(per_channel), per_channel
    if node.op_type == "Mul":
        return per_channel, np.zeros_like(per_channel)
    if node.op_type == "Sub":
        return (np.ones_like(per_channel), -per_channel) if first else (-np.ones_like(per_channel), per_channel)
    if first and np.all(per_channel != 0):  # Div by a constant; constant / x is not affine
        return 1 / per_channel, np.zeros_like(per_channel)
    return None


def _per_channel(value: np.ndarray, axis: int) -> np.ndarray | None:
    """The constant as one value per channel when it broadcasts along the channel axis only (or is one
    value); None when it varies along other axes."""
    if value.size == 1:
        return value.reshape(1)
    if value.ndim == 0 or value.ndim > 4:
        return None
    full = value.reshape((1,) * (4 - value.ndim) + value.shape)
    others = [a for a in range(4) if a != axis]
    if any(full.shape[a] != 1 for a in others):
        return None
    return full.reshape(-1)
