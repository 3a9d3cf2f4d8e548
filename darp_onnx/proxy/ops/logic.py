"""Comparisons and boolean logic with numpy broadcasting: Where, Equal, Greater, GreaterOrEqual, Less,
LessOrEqual, Not, And, Or, Xor, IsNaN, IsInf.

Opset-1 Equal/Greater/Less/And/Or/Xor used the legacy `broadcast`/`axis` form (see elementwise.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import FunctionModule, register_functions, result_for
from darp_onnx.proxy.ops.elementwise import LegacyBinary, legacy_axis
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["IsInfModule"]

_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Equal": torch.eq,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}
_LEGACY = {"Equal", "Greater", "Less", "And", "Or", "Xor"}  # schema version 1 uses the legacy broadcast


def _register_binary(op_type: str, fn: Callable) -> None:
    versions = schema_versions(op_type)
    modern = [v for v in versions if v >= 7] if op_type in _LEGACY else versions

    @add_converter(op_type, versions=modern)
    def convert(node, ctx):
        return result_for(node, FunctionModule(fn, op_type.lower()))

    if op_type in _LEGACY:
        @add_converter(op_type, versions=[v for v in versions if v < 7])
        def convert_legacy(node, ctx):
            return result_for(node, LegacyBinary(fn, legacy_axis(node), op_type.lower()))


for _op, _fn in _BINARY.items():
    _register_binary(_op, _fn)


_UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "Where": torch.where,
    "Not": torch.logical_not,
    "IsNaN": torch.isnan,
}


register_functions(_UNARY)


class IsInfModule(nn.Module):
    """IsInf with `detect_negative` / `detect_positive` (both default 1)."""

    def __init__(self, detect_negative: bool, detect_positive: bool) -> None:
        super().__init__()
        self.detect_negative = detect_negative
        self.detect_positive = detect_positive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.detect_negative and self.detect_positive:
            return torch.isinf(x)
        if self.detect_negative:
            return torch.isneginf(x)
        if self.detect_positive:
            return torch.isposinf(x)
        return torch.zeros_like(x, dtype=torch.bool)

    def extra_repr(self) -> str:
        return f"detect_negative={self.detect_negative}, detect_positive={self.detect_positive}"


@add_converter("IsInf")
def convert_isinf(node, ctx):
    attrs = node_attributes(node)
    return result_for(
        node, IsInfModule(bool(attrs.get("detect_negative", 1)), bool(attrs.get("detect_positive", 1)))
    )
