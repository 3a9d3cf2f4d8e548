"""Converters, one op family per file; importing this package registers them all."""

from darp_onnx.proxy.ops import (  # noqa: F401
    activations,
    elementwise,
)
