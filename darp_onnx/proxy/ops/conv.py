"""Convolutions: Conv and ConvTranspose (1D, 2D, 3D), weights and bias arriving as inputs.

Padding is resolved at run time from the input's spatial size, so `auto_pad` SAME_* works for any
input size; asymmetric pads are applied with `F.pad` before an unpadded convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for
from darp_onnx.proxy.registry import add_converter

__all__ = ["ConvModule", "ConvTransposeModule", "check_auto_pad", "check_same_stride", "resolve_pads",
           "torch_pad_list"]

_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def check_auto_pad(auto_pad: str) -> str:
    if auto_pad not in _AUTO_PADS:
        raise NotImplementedError(f"auto_pad={auto_pad!r} is not an ONNX auto_pad value")
    return auto_pad


def resolve_pads(
    sizes: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    auto_pad: str,
    pads: list[int] | None,
) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial axis, as onnxruntime resolves them for convolution and pooling.

    SAME_* pads make the output ceil(size / stride) long, the odd pixel at the end (UPPER) or the
    beginning (LOWER). A total of -1 (stride one more than the kernel) means no pad at all. Below -1
    onnxruntime's window placement depends on its kernel (NCHWc and MLAS paths differ, MaxPool
    rejects it), so there is no single reference to match.
    """
    n = len(sizes)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = (out - 1) * s + (k - 1) * d + 1 - size
            if total < -1:
                raise NotImplementedError(f"auto_pad={auto_pad} with stride {s} more than one beyond the "
                                          f"kernel extent {(k - 1) * d + 1} on an axis of size {size}")
            total = max(total, 0)
            head = total - total // 2 if auto_pad == "SAME_LOWER" else total // 2
            begin.append(head)
            end.append(total - head)
        return begin, end
    if auto_pad == "VALID" or not pads:
        return [0] * n, [0] * n
    return list(pads[:n]), list(pads[n:])


def torch_pad_list(begin: list[int], end: list[int]) -> list[int]:
    """ONNX per-axis (begin, end) pads as the F.pad list, which starts at the last axis."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        out += [b, e]
    return out


def check_same_stride(attrs, kernel) -> None:
    """SAME_* with a stride two or more beyond the kernel extent (see resolve_pads), when known now."""
    if not attrs.get("auto_pad", "NOTSET").startswith("SAME") or kernel is None:
        return
    if any(not isinstance(k, int) for k in kernel):
        return
    n = len(kernel)
    strides, dilations = attrs.get("strides") or [1] * n, attrs.get("dilations") or [1] * n
    for k, s, d in zip(kernel, strides, dilations, strict=True):
        if s - ((k - 1) * d + 1) >= 2:
            raise NotImplementedError(f"auto_pad={attrs['auto_pad']} with strides={attrs['strides']} more "
                                      f"than one beyond the kernel extent (onnxruntime's result depends on "
                                      "its kernel)")


def _check_same_dilations(attrs) -> None:
    # onnxruntime rejects this combination at run time, so there is no reference to match.
    if attrs.get("auto_pad", "NOTSET").startswith("SAME") and any(d != 1 for d in attrs.get("dilations", [])):
        raise NotImplementedError(f"auto_pad={attrs['auto_pad']} with dilations={attrs['dilations']} "
                                  "(onnxruntime does not support it either)")


class ConvModule(nn.Module):
    def __init__(self, strides, dilations, group: int, auto_pad: str, pads) -> None:
        super().__init__()
        self.strides = strides
        self.dilations = dilations
        self.group = group
        self.auto_pad = auto_pad
        self.pads = pads

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        n = x.dim() - 2
        if n not in _CONV:
            raise NotImplementedError(f"Conv over {n} spatial axes (only 1, 2 and 3 are supported)")
        strides = self.strides or [1] * n
        dilations = self.dilations or [1] * n
        kernel = list(w.shape[2:])
        begin, end = resolve_pads(list(x.shape[2:]), kernel, strides, dilations, self.auto_pad, self.pads)
        if begin == end:
            padding = begin
        else:
            x = F.pad(x, torch_pad_list(begin, end))
            padding = [0] * n
        return _CONV[n](x, w, b, stride=strides, padding=padding, dilation=dilations, groups=self.group)

    def extra_repr(self) -> str:
        return (f"strides={self.strides}, dilations={self.dilations}, group={self.group}, "
                f"auto_pad={self.auto_pad}, pads={self.pads}")


@add_converter("Conv")
def convert_conv(node, ctx):
    attrs = node_attributes(node)
    _check_same_dilations(attrs)
    w_shape = ctx.shape(node.input[1])
    check_same_stride(attrs, attrs.get("kernel_shape") or (w_shape[2:] if w_shape else None))
    module = ConvModule(
        strides=attrs.get("strides"),
        dilations=attrs.get("dilations"),
        group=int(attrs.get("group", 1)),
        auto_pad=check_auto_pad(attrs.get("auto_pad", "NOTSET")),
        pads=attrs.get("pads"),
    )
    return result_for(node, module)


class ConvTransposeModule(nn.Module):
    """Runs an unpadded transposed convolution, then crops (or zero-extends) it to the ONNX output:
    full = stride*(in-1) + (k-1)*dilation + 1, out = full + output_padding - pad_begin - pad_end."""

    def __init__(self, strides, dilations, group, auto_pad, pads, output_padding, output_shape) -> None:
        super().__init__()
        self.strides = strides
        self.dilations = dilations
        self.group = group
        self.auto_pad = auto_pad
        self.pads = pads
        self.output_padding = output_padding
        self.output_shape = output_shape

    def _pads(self, sizes, kernel, strides, dilations, out_pad) -> tuple[list[int], list[int]]:
        n = len(sizes)
        full = [s * (i - 1) + (k - 1) * d + 1
                for i, k, s, d in zip(sizes, kernel, strides, dilations, strict=True)]
        target = None
        if self.output_shape:
            target = list(self.output_shape[-n:])
        elif self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = [i * s for i, s in zip(sizes, strides, strict=True)]
        if target is None:
            if self.auto_pad == "VALID" or not self.pads:
                return [0] * n, [0] * n
            return list(self.pads[:n]), list(self.pads[n:])
        begin, end = [], []
        for f, p, t in zip(full, out_pad, target, strict=True):
            total = f + p - t
            small, large = total // 2, total - total // 2
            upper = self.auto_pad == "SAME_UPPER"
            begin.append(small if upper else large)
            end.append(large if upper else small)
        return begin, end

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        n = x.dim() - 2
        if n not in _CONV_T:
            raise NotImplementedError(f"ConvTranspose over {n} spatial axes (only 1, 2 and 3 are supported)")
        strides = self.strides or [1] * n
        dilations = self.dilations or [1] * n
        out_pad = self.output_padding or [0] * n
        kernel = list(w.shape[2:])
        begin, end = self._pads(list(x.shape[2:]), kernel, strides, dilations, out_pad)
        fn = _CONV_T[n]
        native = (begin == end and all(b >= 0 for b in begin)
                  and all(p < max(s, d) for p, s, d in zip(out_pad, strides, dilations, strict=True)))
        if native:
            return fn(x, w, b, stride=strides, padding=begin, output_padding=out_pad, groups=self.group,
                      dilation=dilations)
        y = fn(x, w, None, stride=strides, padding=0, groups=self.group, dilation=dilations)
        # Negative F.pad values crop; zero-extended positions still get the bias below.
        y = F.pad(y, torch_pad_list([-p for p in begin], [p - e for p, e in zip(out_pad, end, strict=True)]))
        return y if b is None else y + b.reshape([1, -1] + [1] * n)

    def extra_repr(self) -> str:
        return (f"strides={self.strides}, dilations={self.dilations}, group={self.group}, "
                f"auto_pad={self.auto_pad}, pads={self.pads}, output_padding={self.output_padding}, "
                f"output_shape={self.output_shape}")


@add_converter("ConvTranspose")
def convert_conv_transpose(node, ctx):
    attrs = node_attributes(node)
    _check_same_dilations(attrs)
    module = ConvTransposeModule(
        strides=attrs.get("strides"),
        dilations=attrs.get("dilations"),
        group=int(attrs.get("group", 1)),
        auto_pad=check_auto_pad(attrs.get("auto_pad", "NOTSET")),
        pads=attrs.get("pads"),
        output_padding=attrs.get("output_padding"),
        output_shape=attrs.get("output_shape"),
    )
    return result_for(node, module)

