"""Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9, 10).

Rather than leaning on F.interpolate (whose modes cover only some ONNX coordinate transforms), each
resized axis is resampled separately: output positions are mapped to source coordinates with the ONNX
formulas, evaluated in float32 in the order onnxruntime evaluates them, and the input is gathered
(nearest) or blended from gathered neighbours (linear, cubic). Antialiased downsampling widens the
linear/cubic filter by 1/scale; tf_crop_and_resize maps outputs into the roi and fills positions outside
the input with extrapolation_value. Everything stays differentiable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter

__all__ = ["ResizeModule", "ResizeOptions"]

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn", "tf_crop_and_resize")
_POLICIES = ("stretch", "not_larger", "not_smaller")


@dataclass(frozen=True)
class ResizeOptions:
    """The attributes that shape one Resize (defaults: Upsample's and Resize-10's behaviour)."""

    mode: str
    coord_mode: str = "asymmetric"
    nearest_mode: str = "simple"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation_value: float = 0.0
    keep_aspect_ratio_policy: str = "stretch"
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _source_coords(out_len: int, in_len: int, scale: float, mode: str, device, roi=(0.0, 1.0)) -> torch.Tensor:
    x = torch.arange(out_len, dtype=torch.float32, device=device)
    s = torch.tensor(scale, dtype=torch.float32)
    if mode == "tf_crop_and_resize":
        start, end = (torch.tensor(v, dtype=torch.float32) for v in roi)
        if out_len == 1:
            return torch.full_like(x, float(0.5 * (start + end) * (in_len - 1)))
        return start * (in_len - 1) + x * (end - start) * (in_len - 1) / (out_len - 1)
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


def _antialias_taps(coords: torch.Tensor, scale: float, mode: str, a: float):
    """Taps and normalised weights of the linear/cubic filter stretched by 1/scale (downsampling with
    antialias=1), per output position: the ONNX reference's filter, left pixel preferred at integers."""
    base = torch.floor(coords)
    base = torch.where(coords == base, base - 1, base)
    ratio = coords - base  # in (0, 1]
    reach = 1.0 if mode == "linear" else 2.0
    start = math.floor(-reach / scale) + 1
    offsets = torch.arange(start, 2 - start, dtype=torch.float32, device=coords.device)
    d = ((offsets[None, :] - ratio[:, None]) * scale).abs()
    if mode == "linear":
        weights = (1 - d).clamp(min=0)
    else:
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        weights = torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (base[:, None] + offsets[None, :]).long(), weights


def _blend(x, axis, taps, weights, exclude_outside: bool):
    """Sum over taps of x gathered at each tap (edge-clamped) times its weight; taps/weights: (out, n)."""
    in_len = x.shape[axis]
    if exclude_outside:
        weights = torch.where((taps >= 0) & (taps < in_len), weights, torch.zeros_like(weights))
        weights = weights / weights.sum(dim=1, keepdim=True)
    shape = [1] * x.dim()
    shape[axis] = taps.shape[0]
    out = None
    for t, w in zip(taps.unbind(1), weights.unbind(1), strict=True):
        term = x.index_select(axis, t.clamp(0, in_len - 1)) * w.to(x.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def _resample_axis(x, axis, out_len, scale, opts: ResizeOptions, roi=(0.0, 1.0)):
    in_len = x.shape[axis]
    coords = _source_coords(out_len, in_len, scale, opts.coord_mode, x.device, roi)
    y = _interpolate(x, axis, coords, scale, opts)
    if opts.coord_mode != "tf_crop_and_resize":
        return y
    shape = [1] * x.dim()
    shape[axis] = out_len
    outside = ((coords < 0) | (coords > in_len - 1)).reshape(shape)
    return torch.where(outside, torch.full_like(y, opts.extrapolation_value), y)


def _interpolate(x, axis, coords, scale, opts: ResizeOptions):
    in_len = x.shape[axis]
    out_len = coords.shape[0]
    mode, nearest_mode, cubic_a, exclude_outside = opts.mode, opts.nearest_mode, opts.cubic_a, opts.exclude_outside
    shape = [1] * x.dim()
    shape[axis] = out_len
    if opts.antialias and mode != "nearest" and scale < 1:
        return _blend(x, axis, *_antialias_taps(coords, scale, mode, cubic_a), exclude_outside)
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
    weights = torch.stack(_cubic_weights(coords - base, cubic_a), dim=1)
    taps = base.long()[:, None] + torch.arange(-1, 3, device=x.device)[None, :]
    return _blend(x, axis, taps, weights, exclude_outside)


class ResizeModule(nn.Module):
    """form: 'attr' (scales attribute), 'scales' (X, scales) or 'full' (X, roi, scales, sizes)."""

    def __init__(self, form: str, options: ResizeOptions, axes: list[int] | None = None,
                 scales: list[float] | None = None) -> None:
        super().__init__()
        self.form = form
        self.options = options
        self.axes = axes
        self.scales = scales

    def forward(self, x, *rest):
        scales = sizes = roi = None
        if self.form == "attr":
            scales = self.scales
        elif self.form == "scales":
            scales = rest[0].reshape(-1).tolist()
        else:
            roi_t, scales_t, sizes_t = (list(rest) + [None, None, None])[:3]
            if scales_t is not None and scales_t.numel() > 0:
                scales = scales_t.reshape(-1).tolist()
            elif sizes_t is not None and sizes_t.numel() > 0:
                sizes = to_int_list(sizes_t)
            else:
                raise ValueError("Resize needs non-empty scales or sizes")
            if self.options.coord_mode == "tf_crop_and_resize":
                roi = roi_t.reshape(-1).tolist()
        rank = x.dim()
        axes = [a % rank for a in self.axes] if self.axes else list(range(rank))
        plan = self._plan(x.shape, axes, scales, sizes)
        for i, (axis, out_len, scale) in enumerate(plan):
            if out_len == x.shape[axis] and scale == 1.0 and roi is None:
                continue
            box = (roi[i], roi[i + len(axes)]) if roi is not None else (0.0, 1.0)
            x = _resample_axis(x, axis, out_len, scale, self.options, box)
        return x

    def _plan(self, shape, axes, scales, sizes) -> list[tuple[int, int, float]]:
        """(axis, out_len, scale) per resized axis, as onnxruntime computes them in float32."""
        ins = [np.float32(shape[axis]) for axis in axes]
        if sizes is None:
            scales = [np.float32(s) for s in scales]
            return [(axis, int(s * n), float(s)) for axis, s, n in zip(axes, scales, ins, strict=True)]
        policy = self.options.keep_aspect_ratio_policy
        if policy == "stretch":
            return [(axis, out, float(np.float32(out) / n)) for axis, out, n in zip(axes, sizes, ins, strict=True)]
        ratios = [np.float32(out) / n for out, n in zip(sizes, ins, strict=True)]
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        return [(axis, int(np.floor(scale * n + np.float32(0.5))), float(scale))
                for axis, n in zip(axes, ins, strict=True)]

    def extra_repr(self) -> str:
        return f"{self.form}, {self.options}, axes={self.axes}"


def _mode(attrs, allowed=("nearest", "linear", "cubic")) -> str:
    mode = attrs.get("mode", "nearest")
    if mode not in allowed:
        raise NotImplementedError(f"mode={mode!r}")
    return mode


@add_converter("Resize", versions=[10])
def convert_resize_10(node, ctx):
    module = ResizeModule("scales", ResizeOptions(_mode(node_attributes(node), ("nearest", "linear"))))
    return result_for(node, module, static_inputs=(1,))


@add_converter("Resize", versions=[11, 13, 18, 19])
def convert_resize(node, ctx):
    attrs = node_attributes(node)
    coord_mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord_mode not in _COORD_MODES:
        raise NotImplementedError(f"coordinate_transformation_mode={coord_mode!r}")
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
    if nearest_mode not in _NEAREST_MODES[:-1]:
        raise NotImplementedError(f"nearest_mode={nearest_mode!r}")
    mode = _mode(attrs)
    if coord_mode == "tf_crop_and_resize" and mode == "nearest":
        raise NotImplementedError("coordinate_transformation_mode='tf_crop_and_resize' with mode='nearest' "
                                  "(onnxruntime ignores the roi there; the proxy follows onnxruntime)")
    antialias = bool(attrs.get("antialias", 0))
    if antialias and mode == "nearest":
        raise NotImplementedError("antialias=1 with mode='nearest' (antialias applies to linear and cubic)")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy not in _POLICIES:
        raise NotImplementedError(f"keep_aspect_ratio_policy={policy!r}")
    options = ResizeOptions(
        mode, coord_mode=coord_mode, nearest_mode=nearest_mode, cubic_a=float(attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(attrs.get("exclude_outside", 0)), antialias=antialias,
        extrapolation_value=float(attrs.get("extrapolation_value", 0.0)), keep_aspect_ratio_policy=policy,
    )
    return result_for(node, ResizeModule("full", options, axes=attrs.get("axes")), static_inputs=(1, 2, 3))


def _upsample_mode(attrs) -> str:
    mode = attrs.get("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode
    if mode not in ("nearest", "linear"):
        raise NotImplementedError(f"Upsample mode={mode!r}")
    return mode


@add_converter("Upsample", versions=[7])
def convert_upsample_7(node, ctx):
    attrs = node_attributes(node)
    module = ResizeModule("attr", ResizeOptions(_upsample_mode(attrs)), scales=[float(s) for s in attrs["scales"]])
    return result_for(node, module)


@add_converter("Upsample", versions=[9])  # Upsample-10 is deprecated; onnxruntime has no kernel, not claimed
def convert_upsample(node, ctx):
    return result_for(node, ResizeModule("scales", ResizeOptions(_upsample_mode(node_attributes(node)))),
                      static_inputs=(1,))
