"""Data arrays brought to the dtypes the model takes: cast where nothing is lost, else one clear error.

NumPy makes float64 and int64 by default, so data saved by hand rarely has the model's float32 or
int32: float arrays are cast to the model's float type (values must stay finite), integer and bool
arrays to any type that holds every value exactly; strings, objects and lossy casts are refused.
"""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.errors import BadInputError

_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


def _refuse(where: str, array: np.ndarray, target: np.dtype, why: str) -> BadInputError:
    return BadInputError(f"{where} has dtype {array.dtype}, the model takes {np.dtype(target).name}: {why}")


def cast_lossless(array: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    """`array` as `target`: float to float when the values stay finite, anything else only when the
    cast keeps every value exactly."""
    target = np.dtype(target)
    if array.dtype == target:
        return array
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise _refuse(where, array, target, "save numeric arrays (no strings or objects)")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(target)
    if array.dtype.kind == "f" and target.kind == "f":
        if np.isfinite(array).all() and not np.isfinite(cast).all():
            raise _refuse(where, array, target, "some values are beyond its range; rescale the data")
        return cast
    with np.errstate(over="ignore", invalid="ignore"):
        back = cast.astype(array.dtype)
    if not np.array_equal(back, array):
        raise _refuse(where, array, target, "the cast would change values; save the data with the model's dtype")
    return cast


def conform_inputs(inputs: dict[str, np.ndarray], model: onnx.ModelProto, source: str) -> list[str]:
    """Cast each input array (in place in `inputs`) to its model input's dtype; refuse scalars. Returns a note
    for each integer array made float: 0-255 pixels cast as they are reach a model that may take [0, 1]."""
    from darp_onnx.load.inputs import graph_inputs

    notes = []
    for value in graph_inputs(model):
        if value.name not in inputs:
            continue
        array = np.asarray(inputs[value.name])
        where = f"{source}: array for input '{value.name}'"
        if array.ndim == 0:
            raise BadInputError(f"{where} is a scalar; give an array with one sample per row (samples first)")
        elem_type = value.type.tensor_type.elem_type
        if elem_type == onnx.TensorProto.UNDEFINED:
            inputs[value.name] = array
            continue
        target = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
        inputs[value.name] = cast_lossless(array, target, where)
        if array.dtype.kind in "iu" and np.dtype(target).kind == "f" and array.size:
            notes.append(f"{where} holds {array.dtype} values ({array.min()} to {array.max()}), cast to "
                         f"{np.dtype(target).name} as they are; scale them first if the model takes another range")
    return notes


def conform_labels(labels: np.ndarray | None, source: str) -> np.ndarray | None:
    """Labels as int64 class indices: integer (or whole-valued float) arrays with at least one axis."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    where = f"{source}: labels"
    if labels.ndim == 0:
        raise BadInputError(f"{where} are a scalar; give one class index per sample")
    if labels.dtype.kind == "b" or labels.dtype.kind not in _NUMERIC_KINDS:
        raise BadInputError(f"{where} must be integers (class indices), got {labels.dtype}")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
        raise BadInputError(f"{where} must be integers (class indices), got {labels.dtype} with fractions or NaN")
    return cast_lossless(labels, np.int64, where)
