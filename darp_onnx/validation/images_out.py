"""Outputs that are colour pictures (super-resolution, denoising, enhancement, style transfer), judged by PSNR.

A relative error counts a picture's every pixel against its whole brightness, so what is small there is large to
an eye: waifu2x's CUNet, pruned with data to 50%, was written at a relative error of 0.17 with no warning, and its
pictures were 20 dB from the original's (32 dB against the ground truth before, 20 after: washed-out colours,
grid artefacts). A colour picture is a float output of 3 channels (axis 1 or last) and at least MIN_SIDE pixels
a side; its peak is 1, 2 or 255 where the original's values lie within [0, 1], [-1, 1] or [0, 255], else their
range (`_peak`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_SIDE = 16
VISIBLE_PSNR_DB = 30.0  # under this, differences from the original's pictures show
OVERSHOOT_SHARE = 0.1  # a [0, 1] picture's values below 0: an upscaler's ringing at dark edges, never a tenth


def _channel_axis(values: np.ndarray) -> int | None:
    if values.ndim != 4 or not np.issubdtype(values.dtype, np.floating):
        return None
    for axis, sides in ((1, (2, 3)), (3, (1, 2))):
        if values.shape[axis] == 3 and min(values.shape[s] for s in sides) >= MIN_SIDE:
            return None if _sums_to_one(values, axis) else axis  # three classes' probabilities: no picture
    return None


def _sums_to_one(values: np.ndarray, axis: int) -> bool:
    return bool(np.isfinite(values).all() and np.allclose(values.sum(axis=axis), 1.0, atol=1e-3))


def _peak(before: np.ndarray) -> float:
    """1 for pictures in [0, 1], 2 in [-1, 1], 255 in [0, 255], else their range; judged on the 0.1% and 99.9%
    quantiles, and a [0, 1] picture by its share of negative values: waifu2x's upscaled pictures overshoot [0, 1]
    (3% of their values below 0, down to -0.44) and were read as 0-255 pictures, their PSNR 48 dB too high (59.9 dB
    for 11.8), then, on the quantiles alone, as [-1, 1] ones (6 dB too high). A [-1, 1] picture has far more."""
    low, high = (float(q) for q in np.quantile(before, [0.001, 0.999]))
    if high <= 1.1 and float((before < 0).mean()) <= OVERSHOOT_SHARE:
        return 1.0
    if low >= -1.1 and high <= 1.1:
        return 2.0
    if low >= -10.0 and 10.0 < high <= 280.0:
        return 255.0
    return max(float(before.max()) - float(before.min()), 1e-12)


def _one_per_sample(values: np.ndarray) -> np.ndarray:
    """Whole feeds of batch 1 stacked ([samples, 1, 3, h, w]: a style transfer network fed one picture at a time)
    as one picture per sample; other values as they are."""
    v = np.asarray(values)
    return v[:, 0] if v.ndim == 5 and v.shape[1] == 1 else v


def psnr_db(after: np.ndarray, before: np.ndarray) -> float | None:
    """PSNR of `after` against `before` where `before` is a colour picture output (see the module), else None."""
    b, a = _one_per_sample(before), _one_per_sample(after)
    if _channel_axis(b) is None or a.shape != b.shape or not np.isfinite(b).all():
        return None
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(_peak(b) ** 2 / mse)


def worst_picture(names: Sequence[str], after: Sequence[np.ndarray], before: Sequence[np.ndarray]
                  ) -> tuple[str | None, float | None]:
    """The picture output furthest from the original's, and its PSNR in dB; (None, None) where there is none."""
    found = [(db, name) for name, a, b in zip(names, after, before, strict=False)
             if (db := psnr_db(a, b)) is not None]
    if not found:
        return None, None
    db, name = min(found)
    return name, db
