"""Image preprocessing as deployment code does it: resize, scale, mean/std, channel order, layout, dtype.

A `Preprocess` is plain data, named presets cover the usual conventions, and `parse_preprocess` reads
the CLI/TOML spelling: a preset name, optionally followed by `key=value` overrides separated by commas
(`imagenet`, `yolo,channels=bgr`, `unit,mean=0.5/0.5/0.5,std=0.5/0.5/0.5`). The pixel values a model sees
are `(pixel * scale - mean) / std`, per channel in the model's channel order (after an RGB/BGR swap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from darp_onnx.errors import BadInputError

PREPROCESS_FLAG = "--preprocess"
RESIZE_MODES = ("stretch", "letterbox", "topleft", "height", "crop", "stretch-crop")
CHANNEL_ORDERS = ("rgb", "bgr")
LAYOUTS = ("auto", "nchw", "nhwc")
DTYPES = ("auto", "float32", "float16", "float64", "uint8", "int8", "int32", "int64")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes one sample of a model input.

    resize: `stretch` to the input size; `letterbox` (keep the aspect ratio, centred, pad with `pad`);
    `topleft` (the same with the image in the top-left corner, padded on the right and bottom: detectors
    that pad to a square before resizing); `height` (a text line as PaddleOCR's and CRNN recognisers and
    classifiers take it: the input's height, the width its aspect ratio gives, squeezed to the input's width
    when longer, padded on the right; `topleft` shrank a 9:1 line to 21 of 48 pixels high); `crop` (keep the
    centre `crop` share of the shorter side, as `Resize(256) + CenterCrop(224)` does, then resize); `stretch-crop` (keep
    the centre `crop` share of each side, as `Resize((256, 256)) + CenterCrop(224)` does, then resize).
    dtype `auto` is the model input's element type; layout `auto` reads it from the input's shape."""

    resize: str = "stretch"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "rgb"
    layout: str = "auto"
    dtype: str = "auto"
    pad: float = 114.0
    crop: float = 0.875

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


PRESETS: dict[str, Preprocess] = {
    "unit": Preprocess(),  # pixels / 255 in [0, 1]
    "imagenet": Preprocess(resize="crop", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "yolo": Preprocess(resize="letterbox", pad=114.0),  # Ultralytics: letterbox, grey 114 padding, / 255
    "inception": Preprocess(mean=(0.5,), std=(0.5,)),  # TF/Keras 'tf' mode: [-1, 1]
    "caffe": Preprocess(scale=1.0, channels="bgr", mean=(103.939, 116.779, 123.68)),  # Keras 'caffe' mode
    "raw": Preprocess(scale=1.0),  # pixel values 0-255 as they are
}
DEFAULT_PRESET = "unit"


def _floats(key: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).replace(":", "/").split("/"))
    except ValueError:
        raise BadInputError(f"{PREPROCESS_FLAG}: {key}={text!r} is not a number list like 0.5/0.5/0.5") from None
    if not values:
        raise BadInputError(f"{PREPROCESS_FLAG}: {key} is empty")
    return values


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise BadInputError(f"{PREPROCESS_FLAG}: {key}={value!r}; choose one of {', '.join(allowed)}")
    return text


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{PREPROCESS_FLAG}: {key}={value!r} is not a number") from None


def _override(base: Preprocess, key: str, value: Any) -> Preprocess:
    key = key.strip().replace("-", "_")
    if key in ("mean", "std"):
        values = tuple(float(v) for v in value) if isinstance(value, list | tuple) else _floats(key, value)
        if key == "std" and any(v == 0 for v in values):
            raise BadInputError(f"{PREPROCESS_FLAG}: std must not be 0")
        return replace(base, **{key: values})
    if key in ("scale", "pad", "crop"):
        number = _number(key, value)
        if key == "crop" and not 0 < number <= 1:
            raise BadInputError(f"{PREPROCESS_FLAG}: crop={value!r}; give the kept share of the shorter side in (0, 1]")
        return replace(base, **{key: number})
    allowed = {"resize": RESIZE_MODES, "channels": CHANNEL_ORDERS, "layout": LAYOUTS, "dtype": DTYPES}
    if key not in allowed:
        keys = ", ".join(f.name for f in fields(Preprocess))
        raise BadInputError(f"{PREPROCESS_FLAG}: unknown key '{key}'; keys are preset, {keys}")
    return replace(base, **{key: _choice(key, value, allowed[key])})


def _preset(name: str) -> Preprocess:
    key = name.strip().lower()
    if key not in PRESETS:
        raise BadInputError(f"{PREPROCESS_FLAG} {name!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    return PRESETS[key]


def parse_preprocess(spec: str | Mapping[str, Any] | Preprocess | None) -> Preprocess:
    """A Preprocess from a preset name with `key=value` overrides, a TOML table (`preset` plus keys), or None
    (the default preset)."""
    if isinstance(spec, Preprocess):
        return spec
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return PRESETS[DEFAULT_PRESET]
    if isinstance(spec, Mapping):
        items = dict(spec)
        result = _preset(str(items.pop("preset", DEFAULT_PRESET)))
        for key, value in items.items():
            result = _override(result, key, value)
        return result
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    result = PRESETS[DEFAULT_PRESET]
    if parts and "=" not in parts[0]:
        result = _preset(parts.pop(0))
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise BadInputError(f"{PREPROCESS_FLAG} {spec!r}: '{part}' is not key=value (the preset comes first)")
        result = _preset(value) if key.strip() == "preset" else _override(result, key, value)
    return result


def table_to_spec(table: Mapping[str, Any]) -> str:
    """A TOML `[preprocess]` table written as the `--preprocess` string (checked on the way)."""
    parse_preprocess(table)
    items = dict(table)
    parts = [str(items.pop("preset"))] if "preset" in items else []
    for key, value in items.items():
        text = "/".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{key}={text}")
    return ",".join(parts)


@dataclass(frozen=True)
class InputLayout:
    """Where a model input keeps its height, width and channels."""

    height: int
    width: int
    channels: int
    channels_last: bool
    dtype: np.dtype


def input_layout(name: str, shape: tuple[int | None, ...], dtype: np.dtype, layout: str) -> InputLayout:
    """Read H, W, C from a rank-4 input shape; `layout` 'auto' takes NHWC when the last dim is 1, 3 or 4
    and the second is not."""
    if len(shape) != 4:
        raise BadInputError(f"input '{name}' has rank {len(shape)}; image data needs a 4-D image input "
                            "(N, C, H, W or N, H, W, C); use --data-loader for other inputs")
    if layout == "auto":
        layout = "nhwc" if shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "nchw"
    c, h, w = (shape[3], shape[1], shape[2]) if layout == "nhwc" else (shape[1], shape[2], shape[3])
    if not all(isinstance(d, int) and d > 0 for d in (c, h, w)):
        raise BadInputError(f"input '{name}' has shape {shape} with unknown channels/height/width; give them "
                            f"with --input-shape {name}={'1x224x224x3' if layout == 'nhwc' else '1x3x224x224'} "
                            "(your sizes)")
    if c not in (1, 3):
        raise BadInputError(f"input '{name}' has {c} channels; image data fills 1 (grey) or 3 (colour); "
                            "check --preprocess layout= or use --data-loader")
    return InputLayout(h, w, c, layout == "nhwc", np.dtype(dtype))


def _fill(spec: Preprocess, image: Image.Image) -> int | tuple[int, ...]:
    return int(round(spec.pad)) if image.mode == "L" else (int(round(spec.pad)),) * 3


def _resized(image: Image.Image, spec: Preprocess, size: tuple[int, int]) -> Image.Image:
    """`size` is (width, height), as Pillow takes it."""
    if spec.resize == "crop":
        return ImageOps.fit(image, size, method=Image.Resampling.BILINEAR, bleed=(1.0 - spec.crop) / 2.0)
    if spec.resize == "stretch-crop":
        width, height = image.size
        margin_w, margin_h = width * (1.0 - spec.crop) / 2.0, height * (1.0 - spec.crop) / 2.0
        box = (margin_w, margin_h, width - margin_w, height - margin_h)
        return image.resize(size, Image.Resampling.BILINEAR, box=box)
    if image.size == size:
        return image
    if spec.resize == "height":
        width = min(size[0], max(1, math.ceil(size[1] * image.width / image.height)))
        line = image.resize((width, size[1]), Image.Resampling.BILINEAR)
        return ImageOps.pad(line, size, method=Image.Resampling.BILINEAR, color=_fill(spec, image), centering=(0, 0))
    if spec.resize in ("letterbox", "topleft"):
        centering = (0.0, 0.0) if spec.resize == "topleft" else (0.5, 0.5)
        return ImageOps.pad(image, size, method=Image.Resampling.BILINEAR, color=_fill(spec, image),
                            centering=centering)
    return image.resize(size, Image.Resampling.BILINEAR)


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    if len(values) not in (1, channels):
        raise BadInputError(f"{PREPROCESS_FLAG}: {what} has {len(values)} values for a {channels}-channel input; "
                            f"give 1 or {channels}")
    return np.asarray(values, dtype=np.float64)


def image_to_array(image: Image.Image, spec: Preprocess, layout: InputLayout) -> np.ndarray:
    """One sample (no batch axis) in the model's layout and dtype."""
    image = ImageOps.exif_transpose(image).convert("L" if layout.channels == 1 else "RGB")
    image = _resized(image, spec, (layout.width, layout.height))
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels  # H, W, C
    if spec.channels == "bgr" and layout.channels == 3:
        pixels = pixels[..., ::-1]
    mean = _per_channel(spec.mean, layout.channels, "mean")
    std = _per_channel(spec.std, layout.channels, "std")
    values = (pixels * spec.scale - mean) / std
    if not layout.channels_last:
        values = values.transpose(2, 0, 1)
    return cast_values(values, np.dtype(layout.dtype if spec.dtype == "auto" else spec.dtype))


def cast_values(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Floats as they are; integers rounded and clipped to the type's range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.ascontiguousarray(values.astype(dtype))
