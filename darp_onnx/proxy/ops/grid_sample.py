"""GridSample (opset 16: 4-D, modes bilinear/nearest/bicubic; opset 20+: N-D, modes linear/nearest/cubic):
torch's grid_sample, which takes the same grid convention (x before y, in [-1, 1]) and padding modes.
Spatial transformers, optical flow warps and deformable attention sample this way; AffineGrid (opset 20) makes
a spatial transformer's grid from its affine matrices, as torch's affine_grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["AffineGridModule", "GridSampleModule"]

_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest", "bicubic": "bicubic", "cubic": "bicubic"}
_PADDING = ("zeros", "border", "reflection")


class GridSampleModule(nn.Module):
    def __init__(self, mode: str, padding_mode: str, align_corners: bool) -> None:
        super().__init__()
        self.mode = mode
        self.padding_mode = padding_mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        if self.mode == "bicubic" and x.dim() != 4:
            raise NotImplementedError(f"GridSample mode cubic on a rank-{x.dim()} input (torch samples 4-D only)")
        return F.grid_sample(x, grid.to(x.dtype), mode=self.mode, padding_mode=self.padding_mode,
                             align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, padding_mode={self.padding_mode}, align_corners={self.align_corners}"


@add_converter("GridSample", versions=schema_versions("GridSample"))
def convert_grid_sample(node, ctx):
    attrs = node_attributes(node)
    mode, padding = attrs.get("mode", "bilinear"), attrs.get("padding_mode", "zeros")
    if mode not in _MODES or padding not in _PADDING:
        raise NotImplementedError(f"GridSample mode={mode!r} padding_mode={padding!r}")
    return result_for(node, GridSampleModule(_MODES[mode], padding, bool(attrs.get("align_corners", 0))))


class AffineGridModule(nn.Module):
    """AffineGrid (opset 20): the sampling grid of affine matrices theta for an output of `size`."""

    def __init__(self, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners

    def forward(self, theta: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return F.affine_grid(theta, to_int_list(size), align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"align_corners={self.align_corners}"


@add_converter("AffineGrid", versions=schema_versions("AffineGrid"))
def convert_affine_grid(node, ctx):
    align = bool(node_attributes(node).get("align_corners", 0))
    return result_for(node, AffineGridModule(align), static_inputs=(1,))
