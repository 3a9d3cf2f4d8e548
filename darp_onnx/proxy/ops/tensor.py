"""Tensor creation and conversion: Cast, CastLike, ConstantOfShape, Expand, Tile, Range, Identity, Dropout,
EyeLike, NonZero, OneHot.

Half-precision targets compute in float32 (see context.onnx_to_torch_dtype); Cast/CastLike to a half
type still round through that type, so values equal onnxruntime's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.context import onnx_to_torch_dtype
from darp_onnx.proxy.ops.common import FunctionModule, result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["Cast", "ConstantOfShape", "Dropout", "EyeLike", "OneHot", "Range"]

_HALF = {onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16}


def _torch_dtype(onnx_type: int, what: str) -> torch.dtype:
    try:
        return onnx_to_torch_dtype(onnx_type)
    except TypeError as exc:
        raise NotImplementedError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Float8:
    """A float8 target: its torch dtype, largest finite value, the magnitude from which a
    non-saturating cast overflows (the rounding midpoint above the largest value, `tie_overflows` when
    round-half-to-even takes the midpoint up) and whether overflow gives inf (else NaN)."""

    dtype: torch.dtype
    max: float
    overflow_from: float
    tie_overflows: bool
    has_inf: bool


_FLOAT8 = {
    onnx.TensorProto.FLOAT8E4M3FN: Float8(torch.float8_e4m3fn, 448.0, 464.0, False, False),
    onnx.TensorProto.FLOAT8E4M3FNUZ: Float8(torch.float8_e4m3fnuz, 240.0, 248.0, True, False),
    onnx.TensorProto.FLOAT8E5M2: Float8(torch.float8_e5m2, 57344.0, 61440.0, True, True),
    onnx.TensorProto.FLOAT8E5M2FNUZ: Float8(torch.float8_e5m2fnuz, 57344.0, 61440.0, True, False),
}


def _round_to_float8(x: torch.Tensor, spec: Float8, saturate: bool) -> torch.Tensor:
    """x rounded to a float8 type as ONNX Cast does (round half to even; `saturate` clamps out-of-range
    values and infinities to the largest value, else they become inf or NaN), returned as float32."""
    x = x.float()
    y = x.clamp(-spec.max, spec.max).to(spec.dtype).float()
    if saturate:
        return y
    size = x.abs()
    overflow = (size >= spec.overflow_from) if spec.tie_overflows else (size > spec.overflow_from)
    big = torch.copysign(torch.full_like(x, math.inf), x) if spec.has_inf else torch.full_like(x, math.nan)
    return torch.where(overflow, big, y)


class Cast(nn.Module):
    """Converts to `dtype`; float -> int truncates toward zero (as torch and onnxruntime do).

    `round_via` is the half type to round through when the ONNX target is float16/bfloat16, `float8` the
    float8 target to round to; with `dtype` None the target is the dtype of the second input (CastLike
    whose target type is only known at run time).
    """

    def __init__(self, dtype: torch.dtype | None, round_via: torch.dtype | None = None,
                 float8: Float8 | None = None, saturate: bool = True) -> None:
        super().__init__()
        self.dtype = dtype
        self.round_via = round_via
        self.float8 = float8
        self.saturate = saturate

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.dtype if self.dtype is not None else like.dtype
        if self.float8 is not None:
            return _round_to_float8(x, self.float8, self.saturate).to(dtype)
        if self.round_via is not None:
            return x.to(self.round_via).to(dtype)
        return x.to(dtype)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, round_via={self.round_via}, float8={self.float8}, saturate={self.saturate}"


# Narrow types the proxy reads (in float32 or 8-bit integers) but cannot round or wrap to.
_NO_ROUNDING = (onnx.TensorProto.FLOAT4E2M1, onnx.TensorProto.FLOAT8E8M0, onnx.TensorProto.INT4,
                onnx.TensorProto.UINT4, onnx.TensorProto.INT2, onnx.TensorProto.UINT2)


def _cast_module(target: int, attrs: dict, what: str) -> Cast:
    if target in _NO_ROUNDING:
        name = onnx.TensorProto.DataType.Name(target)
        raise NotImplementedError(f"{what}: casting to {name} is not supported (no torch rounding to it)")
    return Cast(_torch_dtype(target, what), _HALF.get(target), _FLOAT8.get(target), bool(attrs.get("saturate", 1)))


class ConstantOfShape(nn.Module):
    def __init__(self, value: float | int | bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.value = value
        self.dtype = dtype

    def forward(self, shape: torch.Tensor) -> torch.Tensor:
        return torch.full(to_int_list(shape), self.value, dtype=self.dtype, device=shape.device)

    def extra_repr(self) -> str:
        return f"value={self.value}, dtype={self.dtype}"


def _expand(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Bidirectional broadcast: the target may hold 1s where the input is larger."""
    return x.expand(torch.broadcast_shapes(x.shape, tuple(to_int_list(shape))))


def _tile(x: torch.Tensor, repeats: torch.Tensor) -> torch.Tensor:
    return x.repeat(to_int_list(repeats))


class Range(nn.Module):
    """start + i * delta for i < max(ceil((limit - start) / delta), 0), in the inputs' dtype."""

    def forward(self, start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        dtype = start.dtype
        if dtype.is_floating_point:
            # onnxruntime takes limit - start in the input dtype, then divides in double.
            span = float((limit - start).reshape(()))
            n = math.ceil(span / float(delta.reshape(())))
        else:
            s, lim, d = int(start.reshape(())), int(limit.reshape(())), int(delta.reshape(()))
            n = -((s - lim) // d)
        steps = torch.arange(max(n, 0), device=start.device, dtype=dtype)
        return start.reshape(()) + steps * delta.reshape(())


def _random_dropout(ratio, training_mode) -> bool:
    """Whether Dropout draws a random mask: training mode with a ratio that is not zero (default 0.5)."""
    training = training_mode is not None and bool(training_mode.reshape(-1)[0])
    return training and (ratio is None or float(ratio.reshape(-1)[0]) != 0.0)


class Dropout(nn.Module):
    """Inference-mode Dropout: the identity. The optional mask follows onnxruntime: all True from
    opset 12, all False (bool, opset 10-11) or all zero (input dtype, opset 7-9) before that."""

    def __init__(self, n_outputs: int, opset: int) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.opset = opset

    def forward(self, x: torch.Tensor, ratio=None, training_mode=None):
        if _random_dropout(ratio, training_mode):
            raise UnsupportedOpError("Dropout with training_mode=True and a non-zero ratio (random masks) is not "
                                     "supported; export the model in inference mode")
        if self.n_outputs == 1:
            return x
        if self.opset >= 12:
            return x, torch.ones_like(x, dtype=torch.bool)
        return x, torch.zeros_like(x, dtype=torch.bool if self.opset >= 10 else x.dtype)

    def extra_repr(self) -> str:
        return f"opset={self.opset}"


class EyeLike(nn.Module):
    def __init__(self, k: int, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.k = k
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        cols = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        return (cols - rows == self.k).to(self.dtype or x.dtype)

    def extra_repr(self) -> str:
        return f"k={self.k}, dtype={self.dtype}"


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 0:
        return torch.zeros((0, int(bool(x))), dtype=torch.int64, device=x.device)
    return torch.nonzero(x).t().contiguous()


class OneHot(nn.Module):
    """Indices in [-depth, depth) are one-hot encoded along `axis` (negative ones wrap); others are
    all `off`."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, indices: torch.Tensor, depth: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        d = int(depth.reshape(-1)[0])
        idx = indices.long()
        idx = torch.where(idx < 0, idx + d, idx)
        axis = self.axis + idx.dim() + 1 if self.axis < 0 else self.axis
        classes = torch.arange(d, device=idx.device).reshape([d] + [1] * (idx.dim() - axis))
        hot = idx.unsqueeze(axis) == classes
        return torch.where(hot, values[1], values[0])

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


# Cast-1 (opset < 6, `to` as a string): no test covers it, not claimed.
@add_converter("Cast", versions=[v for v in schema_versions("Cast") if v >= 6])
def convert_cast(node, ctx):
    attrs = node_attributes(node)  # round_mode (opset 25) only applies to float8e8m0 targets, refused
    return result_for(node, _cast_module(int(attrs["to"]), attrs, "Cast 'to'"))


@add_converter("CastLike")
def convert_cast_like(node, ctx):
    attrs = node_attributes(node)
    target = ctx.elem_type(node.input[1])
    const = ctx.constant(node.input[1])
    if target is None and const is not None:
        target = onnx.helper.np_dtype_to_tensor_dtype(const.dtype)
    if target is None:  # an intermediate tensor of unrecorded type: its run-time dtype is the target
        return result_for(node, Cast(None), static_inputs=[1])
    return result_for(node, _cast_module(target, attrs, "CastLike"), static_inputs=[1])


@add_converter("ConstantOfShape")
def convert_constant_of_shape(node, ctx):
    value, onnx_type = 0.0, onnx.TensorProto.FLOAT
    for attr in node.attribute:
        if attr.name == "value":
            onnx_type = int(attr.t.data_type)
            value = onnx.numpy_helper.to_array(attr.t).reshape(-1)[0].item()
    return result_for(node, ConstantOfShape(value, _torch_dtype(onnx_type, "ConstantOfShape value")))


@add_converter("Expand")
def convert_expand(node, ctx):
    return result_for(node, FunctionModule(_expand, "expand"))


# Tile-1 (opset < 6, tiles + axis inputs) is not claimed.
@add_converter("Tile", versions=[v for v in schema_versions("Tile") if v >= 6])
def convert_tile(node, ctx):
    return result_for(node, FunctionModule(_tile, "tile"))


_FLOAT_OR_INT = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                 onnx.TensorProto.INT64}


@add_converter("Range")
def convert_range(node, ctx):
    # stash_type (opset 27): half inputs accumulate in float32 by default, as the proxy computes them;
    # a half-precision accumulation is refused unless the inputs are known not to be half types.
    stash = int(node_attributes(node).get("stash_type", onnx.TensorProto.FLOAT))
    if stash != onnx.TensorProto.FLOAT and ctx.elem_type(node.input[0]) not in _FLOAT_OR_INT:
        raise NotImplementedError(f"Range with stash_type={stash} (half-precision accumulation)")
    return result_for(node, Range())


@add_converter("Identity")
def convert_identity(node, ctx):
    return result_for(node, FunctionModule(lambda x: x, "identity"))


@add_converter("Dropout")
def convert_dropout(node, ctx):
    attrs = node_attributes(node)
    if attrs.get("is_test", 1) == 0:
        raise NotImplementedError("Dropout with is_test=0 (training mode) is not supported")
    inputs = [*node.input, "", ""]
    training, ratio = ctx.constant(inputs[2]), ctx.constant(inputs[1])
    if training is not None and (ratio is not None or not inputs[1]) and _random_dropout(ratio, training):
        raise NotImplementedError("Dropout with training_mode=True and a non-zero ratio (random masks) is not "
                                  "supported; export the model in inference mode")
    return result_for(node, Dropout(len(node.output), ctx.opset), static_inputs=[1, 2])


@add_converter("EyeLike")
def convert_eye_like(node, ctx):
    attrs = node_attributes(node)
    dtype = _torch_dtype(int(attrs["dtype"]), "EyeLike dtype") if "dtype" in attrs else None
    return result_for(node, EyeLike(int(attrs.get("k", 0)), dtype), static_inputs=[0])


@add_converter("NonZero")
def convert_nonzero(node, ctx):
    return result_for(node, FunctionModule(_nonzero, "nonzero"), static_inputs=[0])


@add_converter("OneHot")
def convert_one_hot(node, ctx):
    return result_for(node, OneHot(int(node_attributes(node).get("axis", -1))))
