"""Elementwise arithmetic and math with numpy broadcasting.

Binary ops: Add, Sub, Mul, Div, Pow, Mod. Variadic: Sum, Mean, Min, Max. Unary: Sqrt, Reciprocal, Neg, Abs,
Exp, Log, Erf, Floor, Ceil, Sin, Cos, Round, Sign.

Before opset 7 the binary ops used a legacy broadcast (`broadcast`/`axis` attributes: B is a contiguous
run of A's dims starting at `axis`); `LegacyBinary` reproduces it by padding B's shape with trailing ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import FunctionModule, register_functions, result_for
from darp_onnx.proxy.registry import add_converter

__all__ = [
    "BinaryOp",
    "LegacyBinary",
    "ModModule",
    "legacy_axis",
    "onnx_div",
    "onnx_pow",
]

# Schema versions with numpy broadcasting; earlier versions use the legacy `broadcast`/`axis` form.
_NUMPY_BINARY_VERSIONS = {"Add": (7, 13, 14), "Sub": (7, 13, 14), "Mul": (7, 13, 14), "Div": (7, 13, 14),
                          "Pow": (7, 12, 13, 15)}
_LEGACY_BINARY_VERSIONS = {"Add": (1, 6), "Sub": (1, 6), "Mul": (1, 6), "Div": (1, 6), "Pow": (1,)}


def onnx_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Div: true division for floats; integer division truncates toward zero (C semantics, like ORT)."""
    if a.is_floating_point():
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")


def onnx_pow(base: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Pow: the result has the base's dtype (ORT semantics for mixed base/exponent types).

    Integer bases follow onnxruntime: a scalar exponent of 2 or 3 multiplies exactly, otherwise the power is
    computed in double precision and truncated toward zero into the base's type.
    """
    if base.is_floating_point():
        if exponent.is_floating_point() and exponent.dtype != base.dtype:
            exponent = exponent.to(base.dtype)
        return torch.pow(base, exponent)
    if exponent.numel() == 1:
        value = exponent.reshape(()).item()
        if value == 2:
            return base * base
        if value == 3:
            return base * base * base
    return torch.pow(base.to(torch.float64), exponent.to(torch.float64)).to(base.dtype)


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Div": onnx_div,
    "Pow": onnx_pow,
}


class BinaryOp(FunctionModule):
    """A binary op with numpy broadcasting (torch's broadcasting rules are numpy's)."""


def legacy_axis(node) -> int | None:
    """The `axis` of the legacy (opset < 7) broadcast form, or None when plain suffix alignment applies."""
    attrs = node_attributes(node)
    if not attrs.get("broadcast", 0):
        return None  # shapes must be equal: any broadcasting rule gives the same result
    return attrs.get("axis")  # without axis, B's shape is a suffix of A's: numpy alignment


class LegacyBinary(nn.Module):
    """Opset < 7 broadcast: with `axis`, B's dims line up with A's dims starting at `axis`."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], axis: int | None,
                 name: str) -> None:
        super().__init__()
        self.fn = fn
        self.axis = axis
        self.name = name

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.axis is not None:
            axis = self.axis + a.dim() if self.axis < 0 else self.axis
            trailing = a.dim() - axis - b.dim()
            if trailing < 0:
                raise ValueError(f"{self.name}: legacy broadcast axis {self.axis} does not fit B's rank")
            b = b.reshape(*b.shape, *([1] * trailing))
        return self.fn(a, b)

    def extra_repr(self) -> str:
        return f"{self.name}, axis={self.axis}"


def _register_binary(op_type: str, fn: Callable) -> None:
    @add_converter(op_type, versions=_NUMPY_BINARY_VERSIONS[op_type])
    def convert(node, ctx):
        # Pow's exponent stays differentiable when it is a tensor, so no input is static.
        return result_for(node, BinaryOp(fn, op_type.lower()))

    @add_converter(op_type, versions=_LEGACY_BINARY_VERSIONS[op_type])
    def convert_legacy(node, ctx):
        return result_for(node, LegacyBinary(fn, legacy_axis(node), op_type.lower()))


for _op, _fn in _BINARY.items():
    _register_binary(_op, _fn)


class ModModule(nn.Module):
    """Mod: fmod=1 is C fmod (sign of the dividend); fmod=0 is floor mod with the divisor's sign (defined
    for floats from opset 28, where a zero result takes the divisor's sign too)."""

    def __init__(self, fmod: int) -> None:
        super().__init__()
        self.fmod = fmod

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.fmod:
            return torch.fmod(a, b)
        if not a.is_floating_point():
            return torch.remainder(a, b)
        r = torch.remainder(a, b)
        return torch.where(r == 0, torch.copysign(torch.zeros_like(r), b), r)

    def extra_repr(self) -> str:
        return f"fmod={self.fmod}"


_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@add_converter("Mod", versions=[10, 13])
def convert_mod(node, ctx):
    fmod = int(node_attributes(node).get("fmod", 0))
    if fmod not in (0, 1):
        raise NotImplementedError(f"Mod attribute fmod={fmod} is not 0 or 1")
    if not fmod and ctx.elem_type(node.input[0]) in _FLOAT_TYPES:
        raise NotImplementedError("Mod with fmod=0 on floating point inputs (ONNX requires fmod=1 before opset 28)")
    return result_for(node, ModModule(fmod))


@add_converter("Mod", versions=[28])
def convert_mod_28(node, ctx):
    fmod = int(node_attributes(node).get("fmod", 0))
    if fmod not in (0, 1):
        raise NotImplementedError(f"Mod attribute fmod={fmod} is not 0 or 1")
    return result_for(node, ModModule(fmod))


# Variadic ops (broadcasting from opset 8; earlier versions require equal shapes, which this also covers).
def _sum(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.add, xs)


def _mean(*xs: torch.Tensor) -> torch.Tensor:
    return _sum(*xs) / len(xs)


def _min(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.minimum, xs)


def _max(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.maximum, xs)


_UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "Sum": _sum,
    "Mean": _mean,
    "Min": _min,
    "Max": _max,
    "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Exp": torch.exp,
    "Log": torch.log,
    "Erf": torch.erf,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,  # tf2onnx writes Atan2 with it (a fingerprint net's direction head)
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
    "Round": torch.round,  # round half to even, like ONNX
    "Sign": torch.sign,
}


register_functions(_UNARY)
