"""Symbolic input dims taken from the `--data` arrays: a text model's sequence axis ([N, S] token ids)
needs no `--input-shape` when the .npz says S. Only array headers are read (no data)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from darp_onnx.load.inputs import graph_inputs


def _symbolic_past_batch(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return any(not (d.HasField("dim_value") and d.dim_value > 0) for d in list(dims)[1:])


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array name -> shape of every .npy member of an .npz file, from the headers."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                shapes[info.filename[:-4]] = _header_shape(member)
    return shapes


def _header_shape(file) -> tuple[int, ...]:
    """The shape an open .npy file's header declares."""
    version = np.lib.format.read_magic(file)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return tuple(read(file)[0])


def _array_shapes(data: object) -> dict[str, tuple[int, ...]]:
    """Array shapes of a Dataset, an .npz file or the first .npz of a folder; {} for anything else."""
    inputs = getattr(data, "inputs", None)
    if isinstance(inputs, Mapping):
        return {k: tuple(np.shape(v)) for k, v in inputs.items()}
    if not isinstance(data, str | os.PathLike):
        return {}
    path = Path(data)
    if path.is_dir():
        path = next(iter(sorted(path.glob("*.npz"))), path)
    if path.suffix != ".npz" or not path.is_file():
        return {}
    try:
        return npz_shapes(path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}  # load_dataset reports a bad file in its own words


def _npy_sample_shapes(data: object, model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """For a one-input model and a folder of .npy files (one sample each, stacked along a new first axis): the
    input's name -> the stack's shape, from the first file's header (attacut's token ids [1, L] were asked for
    --input-shape though the files said L); {} for anything else."""
    values = graph_inputs(model)
    if len(values) != 1 or not isinstance(data, str | os.PathLike) or not Path(data).is_dir():
        return {}
    first = next(iter(sorted(Path(data).glob("*.npy"))), None)
    if first is None or any(Path(data).glob("*.npz")):
        return {}
    try:
        with open(first, "rb") as file:
            shape = _header_shape(file)
    except (OSError, ValueError):
        return {}  # load_dataset reports a bad file in its own words
    return {values[0].name: (2, *shape)}  # a stack of samples: its first axis counts them


def shapes_from_data(data: object, model: onnx.ModelProto, given: Mapping[str, tuple[int, ...]],
                     split: str = "train") -> dict[str, tuple[int, ...]]:
    """`given`, plus (1, *sample shape) for each input that has a symbolic dim past the batch axis, no
    given shape, and an array in `data` (named `<split>_<input>` or `<input>`, as load_dataset reads); where
    the arrays stack whole feeds (one axis more than every input: a model without a batch axis), the feed's
    shape for every input without a given one."""
    inputs = [v for v in graph_inputs(model) if v.name not in given]
    arrays = _array_shapes(data) or _npy_sample_shapes(data, model)
    found = {v.name: next((arrays[k] for k in (f"{split}_{v.name}", v.name) if k in arrays), None) for v in inputs}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph_inputs(model)}
    shapes = dict(given)
    stacked = bool(found) and all(s is not None and len(s) == ranks[n] + 1 for n, s in found.items())
    for value in inputs:
        shape, rank = found[value.name], ranks[value.name]
        if stacked:
            shapes[value.name] = tuple(shape[1:])
        elif shape is not None and _symbolic_past_batch(value) and len(shape) == rank and rank > 1:
            shapes[value.name] = (1, *shape[1:])
    return shapes
