"""Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9, 10).

Rather than leaning on F.interpolate (whose modes cover only some ONNX coordinate transforms), each
resized axis is resampled separately: output positions are mapped to source coordinates with the ONNX
formulas, evaluated in float32 in the order onnxruntime evaluates them, and the input is gathered
(nearest) or blended from gathered neighbours (linear, cubic). Everything stays differentiable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from darp_onnx.proxy.context import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter

__all__ = ["ResizeModule"]

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _source_coords(out_len: int, in_len: int, scale: float, mode: str, device) -> torch.Tensor:
    x = torch.arange(out_len, dtype=torch.float32, device=device)
    s = torch.tensor(scale, dtype=torch.float32)
    if mode == "asymmetric":
        return x / s
    if mode == "half_pixel":
        return (x + 0.5) / s - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / s - 0.5 if out_len > 1 else torch.zeros_like(x)
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / s
    if mode == "align_corners":
        return x * float(in_len - 1) / float(out_len - 1) if out_len > 1 else torch.zeros_like(x)
    # half_pixel_symmetric: onnxruntime forms the offset in float32 and the rest in double.
    adjustment = torch.tensor(out_len, dtype=torch.float32) / (s * in_len)
    offset = (torch.tensor(in_len / 2.0, dtype=torch.float32) * (1 - adjustment)).double()
    return (offset + (x.double() + 0.5) / s.double() - 0.5).float()


def _nearest_index(x: torch.Tensor, mode: str, scale: float) -> torch.Tensor:
    floor = torch.floor(x)
    if mode == "floor":
        index = floor
    elif mode == "ceil":
        index = torch.ceil(x)
    elif mode == "simple":  # Resize-10 and Upsample: ceil when downsampling, else truncation
        index = torch.ceil(x) if scale < 1 else torch.trunc(x)
    else:
        away = torch.sign(x) * torch.floor(x.abs() + 0.5)  # std::round
        tie = x == floor + 0.5
        index = torch.where(tie, floor if mode == "round_prefer_floor" else floor + 1, away)
    return index.long()


def _cubic_weights(t: torch.Tensor, a: float) -> list[torch.Tensor]:
    """Keys cubic convolution weights for taps at floor-1 .. floor+2, t the fractional offset."""
    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _resample_axis(x, axis, out_len, scale, mode, coord_mode, nearest_mode, cubic_a, exclude_outside):
    in_len = x.shape[axis]
    coords = _source_coords(out_len, in_len, scale, coord_mode, x.device)
    shape = [1] * x.dim()
    shape[axis] = out_len
    if mode == "nearest":
        index = _nearest_index(coords, nearest_mode, scale).clamp(0, in_len - 1)
        return x.index_select(axis, index)
    if mode == "linear":
        coords = coords.clamp(0, in_len - 1)
        low = coords.long().clamp(max=in_len - 1)
        high = (low + 1).clamp(max=in_len - 1)
        w_high = (coords - low.float()).to(x.dtype).reshape(shape)
        return x.index_select(axis, low) * (1 - w_high) + x.index_select(axis, high) * w_high
    base = torch.floor(coords)
    weights = _cubic_weights(coords - base, cubic_a)
    taps = [base.long() + offset for offset in (-1, 0, 1, 2)]
    if exclude_outside:
        inside = [(t >= 0) & (t < in_len) for t in taps]
        weights = [torch.where(ok, w, torch.zeros_like(w)) for ok, w in zip(inside, weights, strict=True)]
        total = sum(weights)
        weights = [w / total for w in weights]
    out = None
    for t, w in zip(taps, weights, strict=True):
        term = x.index_select(axis, t.clamp(0, in_len - 1)) * w.to(x.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


class ResizeModule(nn.Module):
    """form: 'attr' (scales attribute), 'scales' (X, scales) or 'full' (X, roi, scales, sizes)."""

    def __init__(self, form: str, mode: str, coord_mode: str = "asymmetric", nearest_mode: str = "simple",
                 cubic_a: float = -0.75, exclude_outside: bool = False, axes: list[int] | None = None,
                 scales: list[float] | None = None) -> None:
        super().__init__()
        self.form = form
        self.mode = mode
        self.coord_mode = coord_mode
        self.nearest_mode = nearest_mode
        self.cubic_a = cubic_a
        self.exclude_outside = exclude_outside
        self.axes = axes
        self.scales = scales

    def forward(self, x, *rest):
        scales = sizes = None
        if self.form == "attr":
            scales = self.scales
        elif self.form == "scales":
            scales = rest[0].reshape(-1).tolist()
        else:
            scales_t = rest[1] if len(rest) > 1 else None
            sizes_t = rest[2] if len(rest) > 2 else None
            if scales_t is not None and scales_t.numel() > 0:
                scales = scales_t.reshape(-1).tolist()
            elif sizes_t is not None and sizes_t.numel() > 0:
                sizes = to_int_list(sizes_t)
            else:
                raise ValueError("Resize needs non-empty scales or sizes")
        rank = x.dim()
        axes = [a % rank for a in self.axes] if self.axes else list(range(rank))
        plan = []  # (axis, out_len, scale) as onnxruntime computes them in float32
        for i, axis in enumerate(axes):
            in_len = x.shape[axis]
            if sizes is not None:
                out_len = sizes[i]
                scale = float(np.float32(out_len) / np.float32(in_len))
            else:
                scale = float(np.float32(scales[i]))
                out_len = int(np.float32(scale) * np.float32(in_len))
            if out_len != in_len or scale != 1.0:
                plan.append((axis, out_len, scale))
        for axis, out_len, scale in plan:
            x = _resample_axis(x, axis, out_len, scale, self.mode, self.coord_mode, self.nearest_mode,
                               self.cubic_a, self.exclude_outside)
        return x

    def extra_repr(self) -> str:
        return (f"{self.form}, mode={self.mode}, coordinate_transformation_mode={self.coord_mode}, "
                f"nearest_mode={self.nearest_mode}, axes={self.axes}")


def _mode(attrs, allowed=("nearest", "linear", "cubic")) -> str:
    mode = attrs.get("mode", "nearest")
    if mode not in allowed:
        raise NotImplementedError(f"mode={mode!r}")
    return mode


@add_converter("Resize", versions=[10])
def convert_resize_10(node, ctx):
    module = ResizeModule("scales", _mode(node_attributes(node), ("nearest", "linear")))
    return result_for(node, module, static_inputs=(1,))


@add_converter("Resize", versions=[11, 13, 18, 19])
def convert_resize(node, ctx):
    attrs = node_attributes(node)
    coord_mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord_mode not in _COORD_MODES:
        raise NotImplementedError(f"coordinate_transformation_mode={coord_mode!r} (roi-based crops are not "
                                  "supported)")
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
    if nearest_mode not in _NEAREST_MODES[:-1]:
        raise NotImplementedError(f"nearest_mode={nearest_mode!r}")
    if int(attrs.get("antialias", 0)) != 0:
        raise NotImplementedError("antialias=1")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        raise NotImplementedError(f"keep_aspect_ratio_policy={policy!r} (only 'stretch')")
    module = ResizeModule(
        "full", _mode(attrs), coord_mode=coord_mode, nearest_mode=nearest_mode,
        cubic_a=float(attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(attrs.get("exclude_outside", 0)),
        axes=attrs.get("axes"),
    )
    return result_for(node, module, static_inputs=(1, 2, 3))


def _upsample_mode(attrs) -> str:
    mode = attrs.get("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode
    if mode not in ("nearest", "linear"):
        raise NotImplementedError(f"Upsample mode={mode!r}")
    return mode


@add_converter("Upsample", versions=[7])
def convert_upsample_7(node, ctx):
    attrs = node_attributes(node)
    module = ResizeModule("attr", _upsample_mode(attrs), scales=[float(s) for s in attrs["scales"]])
    return result_for(node, module)


@add_converter("Upsample", versions=[9, 10])
def convert_upsample(node, ctx):
    return result_for(node, ResizeModule("scales", _upsample_mode(node_attributes(node))), static_inputs=(1,))
