"""Synthetic pictures for data-free pruning.

Random-normal pixels are not what an image model sees: a network distilled on them can match the original
on noise and not on photos (a table classifier: output error 0.18 on noise, 2.17 on pictures). Image
inputs therefore get pictures: smooth fields at several scales (a 1/f-like spectrum, as photos have) with
a few flat shapes on top (edges), random contrast and brightness, in [0, 1]. They are then put in the
value range the model expects (`pixel_ranges`): the graph's own normalisation decides it where the graph
has one; without one, each sample takes one of the usual conventions in turn ([0, 1], ImageNet mean/std,
[-1, 1]), so the pruned model is fitted on whichever one the user feeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from darp_onnx.load.input_normalisation import graph_normalisation
from darp_onnx.load.inputs import graph_inputs, input_dtype

CHUNK = 16  # pictures drawn at once
MIN_SIDE = 16  # smaller 4-D inputs are feature maps or spectra rather than pictures
PICTURE_CHANNELS = (1, 3)


@dataclass(frozen=True)
class PixelRange:
    """Model input = picture in [0, 1] x `scale` + `offset` (one value, or one per channel)."""

    name: str
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)


UNIT = PixelRange("[0, 1]")
SIGNED = PixelRange("[-1, 1]", (2.0,), (-1.0,))
IMAGENET = PixelRange("ImageNet mean/std", tuple(1 / s for s in (0.229, 0.224, 0.225)),
                      tuple(-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)))
RAW = PixelRange("0-255", (255.0,))
# The caller normalises: any of these may be it. Not 0-255 (with it in the mix, a ResNet-18 gave one answer
# for every input, output error 33 on its own inputs) nor noise (mtcnn's ONet on photos: 0.67 without, 0.91
# with a fourth of noise; docs/results.md, stop 27).
UNNORMALISED_GRAPH = (UNIT, IMAGENET, SIGNED)


def channel_axis(shape: tuple[int, ...], dtype: np.dtype) -> int | None:
    """1 (NCHW) or 3 (NHWC) when a feed of `shape` looks like a picture batch, else None. Floats, or bytes
    (an image input taking uint8 pixels: a MobileNetV4 export casts and normalises inside)."""
    if len(shape) != 4 or not (np.issubdtype(dtype, np.floating) or np.dtype(dtype) == np.uint8):
        return None
    for axis, spatial in ((1, (2, 3)), (3, (1, 2))):
        if shape[axis] in PICTURE_CHANNELS and min(shape[a] for a in spatial) >= MIN_SIDE:
            return axis
    return None


def pictures(count: int, channels: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """`count` pictures in [0, 1], float32, NCHW."""
    image = _smooth_field(count, channels, height, width, rng)
    image *= 0.5
    image += 0.5 * _smooth_field(count, 1, height, width, rng)
    image = _draw_shapes(image, rng)
    flat = image.reshape(count, -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    contrast = rng.uniform(0.4, 1.0, count).astype(np.float32)
    bright = rng.uniform(0.0, 1.0, count).astype(np.float32) * (1 - contrast)
    gain = contrast / np.maximum(high - low, 1e-6)  # to [0, 1], then contrast and brightness
    flat *= gain[:, None]
    flat += (bright - low * gain)[:, None]
    return image


def _smooth_field(count: int, channels: int, height: int, width: int, rng: np.random.Generator,
                  octaves: int = 5) -> np.ndarray:
    """Uniform noise drawn at 1/2, 1/4, ... of the size, each octave's amplitude doubling with its scale
    (most energy in the coarse structure, as in photos), summed coarse to fine: each partial sum is
    upsampled bilinearly to the next octave's grid, so only the last step works at the full size."""
    total = None
    for octave in range(octaves, 0, -1):
        cell = 2**octave
        grid = (-(-height // cell) + 1, -(-width // cell) + 1)
        noise = torch.from_numpy(rng.uniform(-cell, cell, (count, channels, *grid)).astype(np.float32))
        total = noise if total is None else noise + _resized(total, grid)
    return _resized(total, (height, width)).numpy()


def _resized(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(field, size=size, mode="bilinear", align_corners=False)


def _draw_shapes(image: np.ndarray, rng: np.random.Generator, per_picture: int = 3) -> np.ndarray:
    """A few flat rectangles and ellipses of random colour: sharp edges, which smooth fields lack."""
    count, channels, height, width = image.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    span = float(np.abs(image).max() or 1.0)
    for n in range(count):
        for _ in range(per_picture):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
            if rng.random() < 0.5:
                inside = (np.abs(ys - cy) < ry) & (np.abs(xs - cx) < rx)
            else:
                inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
            colour = rng.uniform(-span, span, (channels, 1, 1)).astype(np.float32)
            image[n] = np.where(inside, colour, image[n])
    return image


def in_model_range(batch: np.ndarray, pixel_range: PixelRange) -> np.ndarray:
    """`batch` (NCHW pictures in [0, 1]) in `pixel_range`'s values."""
    channels = batch.shape[1]

    def per_channel(values: tuple[float, ...]) -> np.ndarray:
        return np.resize(np.asarray(values, np.float32), channels).reshape(1, channels, 1, 1)

    return batch * per_channel(pixel_range.scale) + per_channel(pixel_range.offset)


def synthetic_pictures(count: int, shape: tuple[int, ...], axis: int, ranges: tuple[PixelRange, ...],
                       rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """`count` samples of one picture input (`shape` without the batch axis, channels on `axis` of the
    batch), sample i in `ranges[i % len(ranges)]`."""
    channels, height, width = (shape[0], shape[1], shape[2]) if axis == 1 else (shape[2], shape[0], shape[1])
    out = np.empty((count, *shape), dtype)
    for start in range(0, count, CHUNK):  # in chunks: the drawing needs a few copies of each picture
        chunk = pictures(min(CHUNK, count - start), channels, height, width, rng)
        for i in range(len(chunk)):
            chunk[i] = in_model_range(chunk[i : i + 1], ranges[(start + i) % len(ranges)])[0]
        if not np.issubdtype(dtype, np.floating):  # uint8 pixels
            chunk = np.clip(np.rint(chunk), 0, 255)
        out[start : start + len(chunk)] = chunk.transpose(0, 2, 3, 1) if axis == 3 else chunk
    return out


def picture_inputs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Channel axis of each input whose (batch-1) shape is a picture's."""
    found = {}
    for value in graph_inputs(model):
        axis = channel_axis(shapes[value.name], input_dtype(value)) if value.name in shapes else None
        if axis is not None:
            found[value.name] = axis
    return found


def range_of_preprocess(name: str, scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> PixelRange:
    """The values a `--preprocess` spec gives pixels 0-255 (x * scale - mean) / std, as a PixelRange of pictures
    in [0, 1]: data-free, the spec the user names decides the range (it was ignored without --data, so a
    detector taking 0-255 was fitted on pictures in [0, 1], where it detects nothing)."""
    channels = max(len(mean), len(std))
    mean, std = np.resize(np.asarray(mean, np.float64), channels), np.resize(np.asarray(std, np.float64), channels)
    return PixelRange(name, tuple(float(v) for v in 255.0 * scale / std), tuple(float(v) for v in -mean / std))


def pixel_ranges(model: onnx.ModelProto, name: str, axis: int) -> tuple[PixelRange, ...]:
    """The value ranges to draw input `name`'s pictures in: the one the graph's own normalisation expects
    where it has one (`graph_normalisation`), else every usual convention; bytes are 0-255."""
    if any(v.name == name and input_dtype(v) == np.uint8 for v in graph_inputs(model)):
        return (RAW,)
    affine = graph_normalisation(model, name, axis)
    return (raw_range_for(affine),) if affine is not None else UNNORMALISED_GRAPH


def raw_range_for(affine: tuple[np.ndarray, np.ndarray]) -> PixelRange:
    """Of the pixel ranges a caller feeds un-normalised (0-255, [0, 1], [-1, 1]), the one the graph's
    normalisation `x * scale + offset` maps closest to a centred range of width about 2."""
    scale, offset = (np.atleast_1d(np.asarray(v, np.float64)) for v in affine)

    def misfit(candidate: PixelRange) -> float:
        low = candidate.offset[0]
        high = low + candidate.scale[0]
        ends = np.stack([low * scale + offset, high * scale + offset])
        width = float(np.mean(np.abs(ends[1] - ends[0])))
        centre = float(np.mean(np.abs(ends.mean(axis=0))))
        return abs(np.log(max(width, 1e-12) / 2.0)) + centre

    return min((RAW, UNIT, SIGNED), key=misfit)


def pictures_note(picture_ranges: Mapping[str, tuple[str, ...]], chosen_by: str | None = None) -> str | None:
    """What the synthetic data fed each picture input (input -> the names of the ranges drawn), for the user;
    `chosen_by`: why one range was used (--preprocess), else the graph's own normalisation decided; None
    without picture inputs."""
    parts = []
    for name, ranges in picture_ranges.items():
        if len(ranges) == 1:
            why = chosen_by or "the graph's own normalisation"
            parts.append(f"'{name}' gets synthetic pictures in {ranges[0]} ({why})")
        else:
            parts.append(f"'{name}' gets synthetic pictures in {', '.join(ranges[:-1])} and {ranges[-1]} in turn "
                         "(the graph does not normalise its input; --preprocess PRESET picks one range)")
    if not parts:
        return None
    return "data-free: " + "; ".join(parts) + "; --data with your own pictures fits the model to them"


PRESET_FOR_RANGE = {RAW.name: "raw", UNIT.name: "unit", SIGNED.name: "inception"}


def default_preset(model: onnx.ModelProto, name: str, channels_last: bool) -> str | None:
    """The --preprocess preset for image files when the user names none: the range the graph's own
    normalisation expects (a graph that divides by 255 wants raw pixels); None when it has none."""
    affine = graph_normalisation(model, name, 3 if channels_last else 1)
    return None if affine is None else PRESET_FOR_RANGE[raw_range_for(affine).name]
