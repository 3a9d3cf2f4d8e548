"""Linear algebra: Gemm, MatMul (numpy semantics, 1-D operands and batch broadcasting), Einsum."""

from __future__ import annotations

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import FunctionModule, result_for
from darp_onnx.proxy.registry import add_converter

__all__ = ["EinsumModule", "GemmModule"]


class GemmModule(nn.Module):
    """Y = alpha * A' @ B' + beta * C, C broadcast unidirectionally to Y's shape."""

    def __init__(self, alpha: float, beta: float, trans_a: bool, trans_b: bool) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.trans_a = trans_a
        self.trans_b = trans_b

    def forward(self, a, b, c=None):
        if self.trans_a:
            a = a.transpose(0, 1)
        if self.trans_b:
            b = b.transpose(0, 1)
        y = a @ b
        if self.alpha != 1.0:
            y = y * self.alpha
        if c is not None and self.beta != 0.0:
            y = y + (c if self.beta == 1.0 else c * self.beta)
        return y

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, transA={self.trans_a}, transB={self.trans_b}"


@add_converter("Gemm")
def convert_gemm(node, ctx):
    attrs = node_attributes(node)
    module = GemmModule(float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0)),
                        bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0)))
    return result_for(node, module)


@add_converter("MatMul")
def convert_matmul(node, ctx):
    return result_for(node, FunctionModule(torch.matmul, "matmul"))


class EinsumModule(nn.Module):
    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation.replace(" ", "")

    def forward(self, *operands):
        return torch.einsum(self.equation, *operands)

    def extra_repr(self) -> str:
        return repr(self.equation)


@add_converter("Einsum")
def convert_einsum(node, ctx):
    return result_for(node, EinsumModule(node_attributes(node)["equation"]))
