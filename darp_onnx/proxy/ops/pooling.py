"""Pooling: MaxPool, AveragePool, LpPool (1D, 2D, 3D) and GlobalAveragePool / GlobalMaxPool / GlobalLpPool.

Output sizes follow onnxruntime: floor or ceil((in + pads - dilated_kernel) / stride) + 1, where in
ceil mode a last window that would start past the input and its leading pad is dropped. Pads that torch
cannot take natively (asymmetric, larger than half the kernel, ceil-mode overhang) are applied
explicitly, and averages divide a window sum by a window count so every count_include_pad / ceil_mode /
dilation combination is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for
from darp_onnx.proxy.ops.conv import check_auto_pad, check_same_stride, resolve_pads, torch_pad_list
from darp_onnx.proxy.registry import OnnxMapping, add_converter, schema_versions

__all__ = ["GlobalPoolModule", "PoolModule"]

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _output_size(size, k, s, d, begin, end, ceil_mode: bool, auto_pad: str) -> int:
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    span = size + begin + end - ((k - 1) * d + 1)
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + begin:
        out -= 1
    return out


def _window_sum(x: torch.Tensor, kernel, strides, dilations) -> torch.Tensor:
    """Sum over each (dilated) window of an already padded (N, C, ...) tensor."""
    n = x.dim() - 2
    flat = x.reshape(-1, 1, *x.shape[2:])
    ones = torch.ones([1, 1, *kernel], dtype=x.dtype, device=x.device)
    y = _CONV[n](flat, ones, stride=strides, dilation=dilations)
    return y.reshape(*x.shape[:2], *y.shape[2:])


class PoolModule(nn.Module):
    """kind is 'max', 'avg' or 'lp'."""

    def __init__(self, kind: str, kernel, strides, pads, dilations, auto_pad: str, ceil_mode: bool,
                 count_include_pad: bool = False, p: float = 2.0, indices: bool = False,
                 storage_order: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.kernel = list(kernel)
        self.strides = strides
        self.pads = pads
        self.dilations = dilations
        self.auto_pad = auto_pad
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.p = p
        self.indices = indices  # MaxPool's second output
        self.storage_order = storage_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.kernel)
        if x.dim() != n + 2 or n not in _CONV:
            raise NotImplementedError(f"{self.kind} pooling of a rank-{x.dim()} input with a {n}-D kernel")
        kernel = self.kernel
        strides = self.strides or [1] * n
        dilations = self.dilations or [1] * n
        sizes = list(x.shape[2:])
        begin, end = resolve_pads(sizes, kernel, strides, dilations, self.auto_pad, self.pads)
        outs = [_output_size(*args, self.ceil_mode, self.auto_pad)
                for args in zip(sizes, kernel, strides, dilations, begin, end, strict=True)]
        # Extra trailing pad so that a floor-mode pooling of the padded input yields `outs` windows.
        tails = [max(0, (o - 1) * s + (k - 1) * d + 1 - (i + b + e))
                 for o, s, k, d, i, b, e in zip(outs, strides, kernel, dilations, sizes, begin, end,
                                                strict=True)]
        if any(o <= 0 for o in outs):
            empty = x.new_zeros([*x.shape[:2], *[max(o, 0) for o in outs]])
            return (empty, empty.long()) if self.indices else empty
        native = (begin == end and not any(tails)
                  and all(2 * b <= k for b, k in zip(begin, kernel, strict=True)))
        crop = (slice(None), slice(None), *[slice(0, o) for o in outs])
        if self.kind == "max" and self.indices:
            y, where = self._max(x, kernel, strides, dilations, begin, end, tails, native)
            return y[crop], where[crop]
        if self.kind == "max":
            y = self._max(x, kernel, strides, dilations, begin, end, tails, native)
        elif self.kind == "avg":
            y = self._avg(x, kernel, strides, dilations, begin, end, tails, native)
        else:
            padded = F.pad(x.abs().pow(self.p), self._pads(begin, end, tails))
            y = _window_sum(padded, kernel, strides, dilations).pow(1.0 / self.p)
        return y[crop]

    @staticmethod
    def _pads(begin, end, tails) -> list[int]:
        return torch_pad_list(begin, [e + t for e, t in zip(end, tails, strict=True)])

    def _max(self, x, kernel, strides, dilations, begin, end, tails, native):
        fn = _MAX[len(kernel)]
        if native:
            out = fn(x, kernel, strides, begin, dilations, return_indices=self.indices)
            return (out[0], self._flat_indices(out[1], x.shape, x.shape, [0] * len(kernel))) if self.indices else out
        low = torch.finfo(x.dtype).min if x.dtype.is_floating_point else torch.iinfo(x.dtype).min
        padded = F.pad(x, self._pads(begin, end, tails), value=low)
        out = fn(padded, kernel, strides, 0, dilations, return_indices=self.indices)
        return (out[0], self._flat_indices(out[1], padded.shape, x.shape, begin)) if self.indices else out

    def _flat_indices(self, where: torch.Tensor, searched, shape, begin) -> torch.Tensor:
        """torch's per-plane indices into the `searched` (padded) spatial shape as ONNX's indices into
        the whole unpadded input: (n * C + c) * plane + the spatial offset, row-major, or column-major
        over the spatial axes with storage_order=1."""
        coords, rest = [], where
        for size in reversed(searched[2:]):
            coords.append(rest % size)
            rest = rest // size
        coords = [c - b for c, b in zip(reversed(coords), begin, strict=True)]
        sizes = list(shape[2:])
        if self.storage_order == 1:
            coords, sizes = coords[::-1], sizes[::-1]
        offset = torch.zeros_like(where)
        for c, size in zip(coords, sizes, strict=True):
            offset = offset * size + c
        plane = math.prod(shape[2:])
        batch_channel = torch.arange(shape[0] * shape[1], device=where.device).reshape(shape[0], shape[1])
        return offset + (batch_channel * plane).reshape(*shape[:2], *[1] * (len(shape) - 2))

    def _avg(self, x, kernel, strides, dilations, begin, end, tails, native):
        if native and all(d == 1 for d in dilations):
            return _AVG[len(kernel)](x, kernel, strides, begin, count_include_pad=self.count_include_pad)
        all_pads = self._pads(begin, end, tails)
        total = _window_sum(F.pad(x, all_pads), kernel, strides, dilations)
        # The divisor counts real input positions, plus the explicit pads with count_include_pad,
        # never the ceil-mode overhang.
        mask = torch.ones([1, 1, *x.shape[2:]], dtype=x.dtype, device=x.device)
        if self.count_include_pad:
            mask = F.pad(mask, torch_pad_list(begin, end), value=1.0)
            mask = F.pad(mask, torch_pad_list([0] * len(tails), tails))
        else:
            mask = F.pad(mask, all_pads)
        count = _window_sum(mask, kernel, strides, dilations)
        return total / count

    def extra_repr(self) -> str:
        return (f"{self.kind}, kernel={self.kernel}, strides={self.strides}, pads={self.pads}, "
                f"dilations={self.dilations}, auto_pad={self.auto_pad}, ceil_mode={self.ceil_mode}")


def _pool(node, kind: str, **extra):
    attrs = node_attributes(node)
    check_same_stride(attrs, attrs["kernel_shape"])
    module = PoolModule(
        kind,
        kernel=attrs["kernel_shape"],
        strides=attrs.get("strides"),
        pads=attrs.get("pads"),
        dilations=attrs.get("dilations"),
        auto_pad=check_auto_pad(attrs.get("auto_pad", "NOTSET")),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        **extra,
    )
    return result_for(node, module)


@add_converter("MaxPool")
def convert_max_pool(node, ctx):
    attrs = node_attributes(node)
    indices = len(node.output) > 1 and bool(node.output[1])
    result = _pool(node, "max", indices=indices, storage_order=int(attrs.get("storage_order", 0)))
    if len(node.output) > 1 and not indices:  # an omitted Indices output: the module returns Y only
        result.onnx_mapping = OnnxMapping(tuple(node.input), (node.output[0],))
    return result


@add_converter("AveragePool")
def convert_average_pool(node, ctx):
    attrs = node_attributes(node)
    return _pool(node, "avg", count_include_pad=bool(attrs.get("count_include_pad", 0)))


@add_converter("LpPool", versions=[v for v in schema_versions("LpPool") if v >= 2])  # LpPool-1: untested
def convert_lp_pool(node, ctx):
    attrs = node_attributes(node)
    return _pool(node, "lp", p=float(attrs.get("p", 2)))


class GlobalPoolModule(nn.Module):
    def __init__(self, kind: str, p: float = 2.0) -> None:
        super().__init__()
        self.kind = kind
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = list(range(2, x.dim()))
        if self.kind == "avg":
            return x.mean(dim=dims, keepdim=True)
        if self.kind == "max":
            return x.amax(dim=dims, keepdim=True)
        return x.abs().pow(self.p).sum(dim=dims, keepdim=True).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return self.kind


@add_converter("GlobalAveragePool")
def convert_global_average_pool(node, ctx):
    return result_for(node, GlobalPoolModule("avg"))


@add_converter("GlobalMaxPool")
def convert_global_max_pool(node, ctx):
    return result_for(node, GlobalPoolModule("max"))


@add_converter("GlobalLpPool", versions=[v for v in schema_versions("GlobalLpPool") if v >= 2])  # -1: untested
def convert_global_lp_pool(node, ctx):
    return result_for(node, GlobalPoolModule("lp", float(node_attributes(node).get("p", 2))))
