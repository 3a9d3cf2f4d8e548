"""Shape manipulation: Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Shape, Size, DepthToSpace,
SpaceToDepth.

Shape-valued inputs (Reshape's shape, Squeeze/Unsqueeze axes from opset 13) are read in `forward`, so
they may be computed at run time from other tensors (e.g. Shape -> Gather -> Concat -> Reshape).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = [
    "DepthToSpace",
    "Flatten",
    "Reshape",
    "Shape",
    "SpaceToDepth",
    "Squeeze",
    "Transpose",
    "Unsqueeze",
]


def _norm_axes(axes: list[int], rank: int) -> list[int]:
    return [a + rank if a < 0 else a for a in axes]


class Flatten(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        outer = math.prod(x.shape[:axis])
        return x.reshape(outer, math.prod(x.shape[axis:]))

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Reshape(nn.Module):
    """0 in the target shape copies the input dim (unless allowzero=1); -1 is inferred."""

    def __init__(self, allowzero: bool) -> None:
        super().__init__()
        self.allowzero = allowzero

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        target = to_int_list(shape)
        if not self.allowzero:
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)

    def extra_repr(self) -> str:
        return f"allowzero={self.allowzero}"


class Transpose(nn.Module):
    def __init__(self, perm: list[int] | None) -> None:
        super().__init__()
        self.perm = perm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        perm = self.perm if self.perm is not None else list(reversed(range(x.dim())))
        return x.permute(perm)

    def extra_repr(self) -> str:
        return f"perm={self.perm}"


class Squeeze(nn.Module):
    """Axes from the attribute (opset < 13) or the optional input; no axes squeezes every size-1 dim."""

    def __init__(self, axes: list[int] | None = None) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = to_int_list(axes) if axes is not None else self.axes
        if dims is None:
            dims = [i for i, d in enumerate(x.shape) if d == 1]
        dims = _norm_axes(dims, x.dim())
        for d in dims:
            if x.shape[d] != 1:
                raise ValueError(f"Squeeze: axis {d} has size {x.shape[d]}, not 1")
        keep = [d for i, d in enumerate(x.shape) if i not in dims]
        return x.reshape(keep)


class Unsqueeze(nn.Module):
    """Axes index the output, so negative ones are taken relative to the output rank."""

    def __init__(self, axes: list[int] | None = None) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = to_int_list(axes) if axes is not None else self.axes
        if dims is None:
            raise ValueError("Unsqueeze needs axes")
        out_rank = x.dim() + len(dims)
        dims = set(_norm_axes(dims, out_rank))
        it = iter(x.shape)
        return x.reshape([1 if i in dims else next(it) for i in range(out_rank)])


class Shape(nn.Module):
    """The input's shape as int64, sliced by start/end (opset 15) with Python slice clamping."""

    def __init__(self, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        self.start = start
        self.end = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = list(x.shape)[self.start : self.end]
        return torch.tensor(dims, dtype=torch.int64, device=x.device)

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class Size(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


class DepthToSpace(nn.Module):
    def __init__(self, blocksize: int, mode: str) -> None:
        super().__init__()
        self.blocksize = blocksize
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        bs = self.blocksize
        oc = c // (bs * bs)
        if self.mode == "DCR":
            t = x.reshape(b, bs, bs, oc, h, w).permute(0, 3, 4, 1, 5, 2)
        else:  # CRD
            t = x.reshape(b, oc, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
        return t.reshape(b, oc, h * bs, w * bs)

    def extra_repr(self) -> str:
        return f"blocksize={self.blocksize}, mode={self.mode}"


class SpaceToDepth(nn.Module):
    """The inverse of DepthToSpace in the same mode: DCR puts the block offset before the channel in
    the output depth, CRD (opset 28) after it."""

    def __init__(self, blocksize: int, mode: str = "DCR") -> None:
        super().__init__()
        self.blocksize = blocksize
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        bs = self.blocksize
        t = x.reshape(b, c, h // bs, bs, w // bs, bs)
        t = t.permute(0, 3, 5, 1, 2, 4) if self.mode == "DCR" else t.permute(0, 1, 3, 5, 2, 4)
        return t.reshape(b, c * bs * bs, h // bs, w // bs)

    def extra_repr(self) -> str:
        return f"blocksize={self.blocksize}, mode={self.mode}"


@add_converter("Flatten")
def convert_flatten(node, ctx):
    return result_for(node, Flatten(int(node_attributes(node).get("axis", 1))))


# Reshape-1 (opset < 5, `shape` attribute): no test covers it, not claimed.
@add_converter("Reshape", versions=[v for v in schema_versions("Reshape") if v >= 5])
def convert_reshape(node, ctx):
    return result_for(node, Reshape(bool(node_attributes(node).get("allowzero", 0))))


@add_converter("Transpose")
def convert_transpose(node, ctx):
    perm = node_attributes(node).get("perm")
    return result_for(node, Transpose(list(perm) if perm is not None else None))


@add_converter("Squeeze", versions=[1, 11])
def convert_squeeze_attr(node, ctx):
    axes = node_attributes(node).get("axes")
    return result_for(node, Squeeze(list(axes) if axes is not None else None))


@add_converter("Squeeze", versions=[v for v in schema_versions("Squeeze") if v >= 13])
def convert_squeeze_input(node, ctx):
    return result_for(node, Squeeze())


@add_converter("Unsqueeze", versions=[1, 11])
def convert_unsqueeze_attr(node, ctx):
    axes = node_attributes(node).get("axes")
    return result_for(node, Unsqueeze(list(axes) if axes is not None else None))


@add_converter("Unsqueeze", versions=[v for v in schema_versions("Unsqueeze") if v >= 13])
def convert_unsqueeze_input(node, ctx):
    return result_for(node, Unsqueeze())


@add_converter("Shape")
def convert_shape(node, ctx):
    attrs = node_attributes(node)
    # Only the input's shape is read: a float initializer feeding Shape never needs a gradient.
    return result_for(node, Shape(int(attrs.get("start", 0)), attrs.get("end")), static_inputs=[0])


@add_converter("Size")
def convert_size(node, ctx):
    return result_for(node, Size(), static_inputs=[0])


@add_converter("DepthToSpace")
def convert_depth_to_space(node, ctx):
    attrs = node_attributes(node)
    mode = attrs.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise NotImplementedError(f"DepthToSpace mode '{mode}' is not supported (DCR or CRD)")
    return result_for(node, DepthToSpace(int(attrs["blocksize"]), mode))


@add_converter("SpaceToDepth")
def convert_space_to_depth(node, ctx):
    attrs = node_attributes(node)
    mode = attrs.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise NotImplementedError(f"SpaceToDepth mode '{mode}' is not supported (DCR or CRD)")
    return result_for(node, SpaceToDepth(int(attrs["blocksize"]), mode))
