"""Elementwise arithmetic with numpy broadcasting: Add, Sub, Mul, Div."""

from __future__ import annotations

import torch

from darp_onnx.proxy.ops.common import FunctionModule, result_for
from darp_onnx.proxy.registry import add_converter

__all__: list[str] = []

_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}


def _make(op_type, fn):
    @add_converter(op_type)
    def convert(node, ctx):
        return result_for(node, FunctionModule(fn, op_type.lower()))

    return convert


for _op, _fn in _BINARY.items():
    _make(_op, _fn)


