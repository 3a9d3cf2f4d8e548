"""Activation functions: Relu, LeakyRelu, PRelu, Elu, Selu, Celu, ThresholdedRelu, Sigmoid, HardSigmoid,
HardSwish, Tanh, Softplus, Softsign, Gelu, Mish, Clip, Softmax, LogSoftmax."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import attribute, node_attributes
from darp_onnx.proxy.ops.common import FunctionModule, result_for
from darp_onnx.proxy.registry import add_converter

__all__ = ["ClipModule", "SoftmaxModule", "onnx_prelu"]


_attr = attribute


def onnx_prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """PRelu: slope broadcasts to X unidirectionally (numpy rules), e.g. [C,1,1] against [N,C,H,W]."""
    return torch.where(x < 0, x * slope, x)


def _selu(x: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


def _hard_sigmoid(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


def _thresholded_relu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.where(x > alpha, x, torch.zeros_like(x))


_PLAIN: dict[str, tuple[Callable[..., torch.Tensor], tuple[int, ...] | None]] = {
    "Relu": (torch.relu, None),
    "Sigmoid": (torch.sigmoid, None),
    "Tanh": (torch.tanh, None),
    "Softplus": (F.softplus, None),
    "Softsign": (F.softsign, None),
    "HardSwish": (F.hardswish, None),  # x * max(0, min(1, x/6 + 1/2))
    "Mish": (F.mish, None),
    "PRelu": (onnx_prelu, (7, 9, 16)),  # opsets 1/6 used a legacy slope form onnxruntime lacks
}


def _register_plain(op_type: str, fn: Callable, versions) -> None:
    @add_converter(op_type, versions=versions)
    def convert(node, ctx):
        return result_for(node, FunctionModule(fn, op_type.lower()))


for _op, (_fn, _versions) in _PLAIN.items():
    _register_plain(_op, _fn, _versions)


# op -> (function taking keyword attributes, {attribute: default})
_WITH_ATTRS: dict[str, tuple[Callable[..., torch.Tensor], dict[str, float]]] = {
    "LeakyRelu": (F.leaky_relu, {"negative_slope": 0.01}),
    "Elu": (F.elu, {"alpha": 1.0}),
    "Celu": (F.celu, {"alpha": 1.0}),
    "Selu": (_selu, {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}),
    "HardSigmoid": (_hard_sigmoid, {"alpha": 0.2, "beta": 0.5}),
    "ThresholdedRelu": (_thresholded_relu, {"alpha": 1.0}),
}


_ONNX_NAME = {"negative_slope": "alpha"}


def _register_attrs(op_type: str, fn: Callable, defaults: dict[str, float]) -> None:
    @add_converter(op_type)
    def convert(node, ctx):
        attrs = node_attributes(node)
        # LeakyRelu's ONNX `alpha` is torch's `negative_slope`.
        kwargs = {k: float(attrs.get(_ONNX_NAME.get(k, k), default)) for k, default in defaults.items()}
        name = f"{op_type.lower()}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        return result_for(node, FunctionModule(functools.partial(fn, **kwargs), name))


for _op, (_fn, _defaults) in _WITH_ATTRS.items():
    _register_attrs(_op, _fn, _defaults)


@add_converter("Gelu")
def convert_gelu(node, ctx):
    approximate = _attr(node, "approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu attribute approximate='{approximate}' is not 'none' or 'tanh'")
    fn = functools.partial(F.gelu, approximate=approximate)
    return result_for(node, FunctionModule(fn, f"gelu(approximate={approximate})"))


class ClipModule(nn.Module):
    """Clip to [min, max]: attribute bounds (opset < 11) or optional scalar tensor inputs (opset >= 11).

    When min > max every value becomes max, as in ONNX and torch.clamp.
    """

    def __init__(self, lo: float | None = None, hi: float | None = None) -> None:
        super().__init__()
        self.lo = lo
        self.hi = hi

    def forward(self, x: torch.Tensor, lo: torch.Tensor | None = None,
                hi: torch.Tensor | None = None) -> torch.Tensor:
        lo = self.lo if lo is None else lo.reshape(()).to(x.dtype)
        hi = self.hi if hi is None else hi.reshape(()).to(x.dtype)
        if lo is None and hi is None:
            return x
        return torch.clamp(x, lo, hi)

    def extra_repr(self) -> str:
        return f"min={self.lo}, max={self.hi}"


@add_converter("Clip", versions=(6,))  # Clip-1 (opset < 6): no test covers it, not claimed
def convert_clip_attr(node, ctx):
    attrs = node_attributes(node)
    lo, hi = attrs.get("min"), attrs.get("max")
    return result_for(node, ClipModule(None if lo is None else float(lo), None if hi is None else float(hi)))


@add_converter("Clip", versions=(11, 12, 13))
def convert_clip(node, ctx):
    return result_for(node, ClipModule(), static_inputs=(1, 2))


class SoftmaxModule(nn.Module):
    """(Log)Softmax. Before opset 13 the input is coerced to 2-D: dims [axis:] are flattened and normalised
    together; from opset 13 the op normalises along the single `axis`."""

    def __init__(self, axis: int, coerce_2d: bool, log: bool) -> None:
        super().__init__()
        self.axis = axis
        self.coerce_2d = coerce_2d
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = torch.log_softmax if self.log else torch.softmax
        if not self.coerce_2d:
            return fn(x, dim=self.axis)
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        flat = x.reshape(*x.shape[:axis], math.prod(x.shape[axis:]))
        return fn(flat, dim=-1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, coerce_2d={self.coerce_2d}, log={self.log}"


def _register_softmax(op_type: str, log: bool) -> None:
    @add_converter(op_type, versions=(1, 11))
    def convert_legacy(node, ctx):
        return result_for(node, SoftmaxModule(int(_attr(node, "axis", 1)), True, log))

    @add_converter(op_type, versions=(13,))
    def convert(node, ctx):
        return result_for(node, SoftmaxModule(int(_attr(node, "axis", -1)), False, log))


_register_softmax("Softmax", log=False)
_register_softmax("LogSoftmax", log=True)
