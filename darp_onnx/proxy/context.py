"""What a converter may ask about the graph while it builds its module."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

# Half-precision and narrower float models compute in float32 inside the proxy; trained weights are
# written back in their own dtype.
_COMPUTE_DTYPE_OVERRIDES = {
    onnx.TensorProto.FLOAT16: torch.float32,
    onnx.TensorProto.BFLOAT16: torch.float32,
    onnx.TensorProto.FLOAT8E4M3FN: torch.float32,
    onnx.TensorProto.FLOAT8E4M3FNUZ: torch.float32,
    onnx.TensorProto.FLOAT8E5M2: torch.float32,
    onnx.TensorProto.FLOAT8E5M2FNUZ: torch.float32,
    onnx.TensorProto.FLOAT8E8M0: torch.float32,
    onnx.TensorProto.FLOAT4E2M1: torch.float32,  # read only: no torch dtype to write back or cast to
    # 4- and 2-bit integers only move through data-movement ops and casts: exact in 8 bits (read only).
    onnx.TensorProto.INT4: torch.int8,
    onnx.TensorProto.UINT4: torch.uint8,
    onnx.TensorProto.INT2: torch.int8,
    onnx.TensorProto.UINT2: torch.uint8,
}

_ONNX_TO_TORCH = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
    onnx.TensorProto.FLOAT8E4M3FN: torch.float8_e4m3fn,
    onnx.TensorProto.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz,
    onnx.TensorProto.FLOAT8E5M2: torch.float8_e5m2,
    onnx.TensorProto.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz,
    onnx.TensorProto.FLOAT8E8M0: torch.float8_e8m0fnu,
}
# numpy (ml_dtypes) types torch cannot read: converted on the way in, exactly.
_NUMPY_VIA = {name: np.float32 for name in ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                                            "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn")}
_NUMPY_VIA |= {"int4": np.int8, "int2": np.int8, "uint4": np.uint8, "uint2": np.uint8}


def onnx_to_torch_dtype(onnx_dtype: int, *, compute: bool = True) -> torch.dtype:
    """The torch dtype for an ONNX element type; with `compute`, half types map to float32."""
    if compute and onnx_dtype in _COMPUTE_DTYPE_OVERRIDES:
        return _COMPUTE_DTYPE_OVERRIDES[onnx_dtype]
    try:
        return _ONNX_TO_TORCH[onnx_dtype]
    except KeyError:
        name = onnx.TensorProto.DataType.Name(onnx_dtype)
        raise TypeError(f"ONNX element type {name} has no torch equivalent in darp-onnx") from None


def is_supported_elem_type(onnx_dtype: int) -> bool:
    """Whether tensors of this ONNX element type can enter the proxy (uint16/32/64, 4-bit, 2-bit and
    string tensors cannot: torch has no kernels for them)."""
    return onnx_dtype in _ONNX_TO_TORCH or onnx_dtype in _COMPUTE_DTYPE_OVERRIDES


def numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """A torch tensor from a numpy array: bfloat16 and float8 (ml_dtypes) arrays as float32, 4- and 2-bit
    integers as 8-bit ones."""
    array = np.asarray(array)
    if array.dtype.name in _NUMPY_VIA:
        array = array.astype(_NUMPY_VIA[array.dtype.name])
    elif not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


@dataclass
class ConvertContext:
    """Read-only facts for converters: the opset, statically known tensors and inferred types/shapes."""

    opset: int
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    value_info: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    source: str = "<model>"

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a tensor known before run time (initializer or Constant output), else None."""
        if not name:
            return None
        return self.constants.get(name)

    def elem_type(self, name: str) -> int | None:
        info = self.value_info.get(name)
        if info is None or not info.type.HasField("tensor_type"):
            return None
        return int(info.type.tensor_type.elem_type) or None

    def rank(self, name: str) -> int | None:
        if name in self.constants:
            return int(np.ndim(self.constants[name]))
        info = self.value_info.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return len(info.type.tensor_type.shape.dim)

    def shape(self, name: str) -> list[int | str | None] | None:
        """Inferred shape: ints for known dims, the symbol for symbolic ones, None for unknown."""
        if name in self.constants:
            return list(np.shape(self.constants[name]))
        info = self.value_info.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        dims: list[int | str | None] = []
        for d in info.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        return dims
