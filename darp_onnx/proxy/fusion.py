"""Op patterns the proxy runs as one torch kernel instead of node by node.

Exporters spell some functions out in primitive ops (GELU as Div/Erf/Add/Mul/Mul, a linear layer as
MatMul + Add). Running them as one fused torch call computes the same values and saves several
elementwise kernels in the forward and backward passes. A pattern is fused only when its intermediate
tensors have no other reader, so every tensor the rest of the proxy (and the gates) can see is
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import torch.nn.functional as F
from torch import nn

from darp_onnx.proxy.registry import OnnxMapping, OperationConverterResult


class ErfGelu(nn.Module):
    """x * 0.5 * (1 + erf(x / sqrt(2))), the exact GELU."""

    def forward(self, x):
        return F.gelu(x)


class LinearBias(nn.Module):
    """MatMul by a [in, out] weight followed by a bias Add, as one addmm-backed call."""

    def forward(self, x, weight, bias):
        return F.linear(x, weight.t(), bias)


@dataclass(frozen=True)
class Fusion:
    anchor: int  # index of the pattern's last node: the fused step runs there
    members: frozenset[int]  # node indices the fused step replaces
    result: OperationConverterResult
    op_type: str


def _scalar(values: Mapping[str, np.ndarray], name: str) -> float | None:
    value = values.get(name)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return None
    return float(value.reshape(()))


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The input of a two-input node that is not `name`."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def find_fusions(graph: onnx.GraphProto, values: Mapping[str, np.ndarray]) -> list[Fusion]:
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            readers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}

    def only_reader(tensor: str) -> int | None:
        users = readers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    fusions: list[Fusion] = []
    fusions += _linear_bias(nodes, values, only_reader)
    for e, erf in enumerate(nodes):
        if erf.op_type != "Erf" or erf.input[0] not in producer:
            continue
        d = producer[erf.input[0]]
        div = nodes[d]
        if div.op_type != "Div" or len(div.input) != 2 or only_reader(div.output[0]) != e:
            continue
        x = div.input[0]
        if not math.isclose(_scalar(values, div.input[1]) or 0.0, math.sqrt(2.0), rel_tol=1e-6):
            continue
        a = only_reader(erf.output[0])
        if a is None or nodes[a].op_type != "Add" or _scalar(values, _other(nodes[a], erf.output[0]) or "") != 1.0:
            continue
        m1 = only_reader(nodes[a].output[0])
        if m1 is None or nodes[m1].op_type != "Mul":
            continue
        m2 = only_reader(nodes[m1].output[0])
        if m2 is None or nodes[m2].op_type != "Mul":
            continue
        first, second = _other(nodes[m1], nodes[a].output[0]), _other(nodes[m2], nodes[m1].output[0])
        # 0.5 and x multiply in, in either order
        if {_scalar(values, first or ""), _scalar(values, second or "")} & {0.5} and x in (first, second):
            result = OperationConverterResult(ErfGelu(), OnnxMapping((x,), (nodes[m2].output[0],)))
            fusions.append(Fusion(m2, frozenset({d, e, a, m1, m2}), result, "Gelu"))
    return fusions


def _linear_bias(nodes, values, only_reader) -> list[Fusion]:
    """MatMul(x, W[in, out]) -> Add(bias[out]) with constant W and bias; the step keeps the MatMul's
    op type and reads (x, W, bias), so gates and weight roles see a linear layer as before."""
    found = []
    for m, matmul in enumerate(nodes):
        if matmul.op_type != "MatMul" or len(matmul.input) != 2 or matmul.input[0] in values:
            continue
        weight = values.get(matmul.input[1])
        if weight is None or weight.ndim != 2 or weight.dtype.kind != "f":
            continue
        a = only_reader(matmul.output[0])
        if a is None or nodes[a].op_type != "Add":
            continue
        bias_name = _other(nodes[a], matmul.output[0])
        bias = values.get(bias_name or "")
        if bias is None or bias.shape != (weight.shape[1],) or bias.dtype != weight.dtype:
            continue
        mapping = OnnxMapping((matmul.input[0], matmul.input[1], bias_name), (nodes[a].output[0],))
        found.append(Fusion(a, frozenset({m, a}), OperationConverterResult(LinearBias(), mapping), "MatMul"))
    return found
