"""Why the proxy may refuse a case whose ops it claims: each reason is a pattern on the refusal message.

A claimed case refused for a reason not listed here fails the conformance test, so a converter that
starts refusing what it used to compute is caught. Keep each reason short and true.
"""

from __future__ import annotations

import re

REFUSALS = {
    # torch has no kernels for these element types (or no type at all); the proxy names the tensor.
    r"has element type (UINT16|UINT32|UINT64)\b": "integer types torch cannot compute with",
    r"string tensors are not supported": "string tensors",
    r"is not a tensor \((sequence_type|optional_type|map_type|sparse_tensor_type)\)": "non-tensor graph inputs",
    # Cast targets torch cannot round to.
    r"casting to (FLOAT4E2M1|FLOAT8E8M0|INT4|UINT4|INT2|UINT2) is not supported": "Cast targets torch cannot "
    "round or wrap to (float4, float8e8m0, 4- and 2-bit integers)",
    # Invalid before opset 28 (restamped cases in test_version_sweep reach it).
    r"Mod with fmod=0 on floating point inputs \(ONNX requires fmod=1 before opset 28\)": "float Mod fmod=0 < 28",
    # Random masks cannot equal the reference's.
    r"Dropout with training_mode=True and a non-zero ratio": "training-mode Dropout (random)",
}

_PATTERN = re.compile("|".join(f"(?:{p})" for p in REFUSALS))


def expected_refusal(message: str) -> bool:
    """Whether a refusal message gives one of the listed reasons."""
    return bool(_PATTERN.search(message))
