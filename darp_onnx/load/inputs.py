"""Input data: synthetic inputs drawn from a model's input spec (more sources arrive with `prune`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from darp_onnx.errors import BadInputError, MissingInputShapeError

_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.BOOL: np.bool_,
}


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Inputs the caller feeds (initializers listed as inputs by old exporters are excluded)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def has_free_sizes(model: onnx.ModelProto) -> bool:
    """An input declares a symbolic or unknown size besides its first (batch) axis."""
    return any(not d.HasField("dim_value") or d.dim_value <= 0
               for v in graph_inputs(model) for d in v.type.tensor_type.shape.dim[1:])


def input_dtype(value: onnx.ValueInfoProto) -> np.dtype:
    """The numpy dtype of a graph input (float32 for types numpy has no match for)."""
    return np.dtype(_NP_TYPES.get(value.type.tensor_type.elem_type, np.float32))


def input_shape(
    value: onnx.ValueInfoProto, batch: int, overrides: Mapping[str, tuple[int, ...]] | None = None
) -> tuple[int, ...]:
    """Concrete shape for one input: an override, else the declared dims with a symbolic or unknown
    leading dim set to `batch`. Other unknown dims are an error naming the input and the flag."""
    if overrides and value.name in overrides:
        return tuple(int(d) for d in overrides[value.name])
    dims = value.type.tensor_type.shape.dim
    shape: list[int] = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        elif axis == 0:
            shape.append(batch)
        else:
            raise MissingInputShapeError(
                f"input '{value.name}' has a symbolic dim '{dim.dim_param or '?'}' on axis {axis}; "
                f"give its shape with --input-shape {value.name}={example_shape(value)} (your sizes)"
            )
    return tuple(shape)


def example_shape(value: onnx.ValueInfoProto) -> str:
    """An --input-shape example of the input's own rank: its fixed dims, 1 for the batch, and a size for each
    free one (224 for a picture's sides, 64 for a sequence); '1x3x224x224' was shown for a [1, 2, seq_len]
    token input."""
    dims = value.type.tensor_type.shape.dim
    floats = np.issubdtype(input_dtype(value), np.floating)
    picture = len(dims) == 4 and floats
    channels_last = picture and dims[3].HasField("dim_value") and dims[3].dim_value in (1, 3)  # [N, H, W, 3]
    # a waveform, [N, samples] or [N, 1, samples]: a wav2vec2's convolutions need 400 samples, 64 failed
    one_channel = len(dims) == 3 and dims[1].HasField("dim_value") and dims[1].dim_value == 1
    waveform = floats and (len(dims) == 2 or one_channel)
    sizes = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            sizes.append(int(dim.dim_value))
        elif axis == 0:
            sizes.append(1)
        elif waveform and axis == len(dims) - 1:
            sizes.append(WAVEFORM_SAMPLES)
        else:
            sizes.append(3 if picture and axis == 1 and not channels_last else 224 if picture else 64)
    return "x".join(map(str, sizes)) or "1"


WAVEFORM_SAMPLES = 16000  # one second at 16 kHz


def synthetic_inputs(
    model: onnx.ModelProto,
    *,
    batch: int = 2,
    seed: int = 0,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Random inputs matching the input spec: standard normal floats; integers that index an embedding table
    drawn from all its rows (`index_inputs`); one integer per sample (a length) the full length
    (`full_length`); other integers 0 or 1 (valid ids and masks)."""
    from darp_onnx.load.index_inputs import index_bounds

    rng = np.random.default_rng(seed)
    bounds = index_bounds(model)
    values = graph_inputs(model)
    for value in values:
        elem = value.type.tensor_type.elem_type
        if elem not in _NP_TYPES:
            raise BadInputError(
                f"input '{value.name}' has element type {onnx.TensorProto.DataType.Name(elem)}; "
                "darp-onnx cannot make synthetic data for it, pass --data"
            )
    concrete = {v.name: input_shape(v, batch, shapes) for v in values}
    length = full_length(values, concrete)
    feeds: dict[str, np.ndarray] = {}
    for value in values:
        dtype, shape = _NP_TYPES[value.type.tensor_type.elem_type], concrete[value.name]
        if length is not None and value.name not in bounds and _one_per_sample(dtype, shape, batch):
            feeds[value.name] = np.full(shape, length, dtype)
        else:
            feeds[value.name] = draw_values(shape, dtype, rng, bounds.get(value.name))
    return feeds


def _one_per_sample(dtype: type, shape: tuple[int, ...], batch: int) -> bool:
    return np.issubdtype(dtype, np.integer) and len(shape) in (1, 2) and shape[0] == batch and shape[-1:] in (
        (batch,), (1,))


def full_length(values: list[onnx.ValueInfoProto], shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """What an integer input with one value per sample (`lengths`, `widths`) gets: the last axis of the
    first float input of rank 2 or more (its time steps or width), so every sample counts as whole. With
    0 or 1 there, trueocr's text recogniser read nothing in any sample and every output was constant."""
    for value in values:
        shape = shapes[value.name]
        if np.issubdtype(input_dtype(value), np.floating) and len(shape) >= 2:
            return int(shape[-1])
    return None


def draw_values(shape: tuple[int, ...], dtype: type, rng: np.random.Generator, bound: int | None = None
                ) -> np.ndarray:
    """Integers in [0, `bound`) where a bound is given (token ids, also in a float input that the graph casts
    to an index: tf2onnx's Keras Embedding), else standard normal floats, random booleans, integers 0 or 1."""
    if bound is not None and dtype != np.bool_:
        return rng.integers(0, bound, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(0, 2, size=shape).astype(dtype)


def smooth_image(shape: tuple[int, ...], rng: np.random.Generator, cell: int = 16) -> np.ndarray:
    """A picture whose neighbouring pixels are alike, as in photos: uniform noise in [-1, 1] drawn at
    1/`cell` of the size and repeated. The two largest of axes 1-3 are height and width (NCHW or NHWC).
    Timing wants it: some kernels run slower on random-normal pixels than on any real input (onnxruntime's
    PRelu up to 15x: it branches on each value's sign)."""
    spatial = sorted(range(1, 4), key=lambda axis: shape[axis])[-2:]
    coarse = rng.uniform(-1.0, 1.0, [-(-n // cell) if axis in spatial else n for axis, n in enumerate(shape)])
    for axis in spatial:
        coarse = np.repeat(coarse, cell, axis=axis)
    return coarse[tuple(slice(0, n) for n in shape)]


def with_smooth_images(feeds: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """`feeds` with every 4-D float array (an image batch) replaced by a `smooth_image` of its shape and dtype."""
    rng = np.random.default_rng(seed)
    return {name: smooth_image(value.shape, rng).astype(value.dtype)
            if value.ndim == 4 and np.issubdtype(value.dtype, np.floating) else value
            for name, value in feeds.items()}
