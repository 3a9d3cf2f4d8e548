"""ONNX -> PyTorch proxy: converters in a registry keyed by (domain, op_type, since_version)."""

# Importing the converter modules registers them; after the names above so they can import them.
from darp_onnx.proxy import ops  # noqa: E402, F401
from darp_onnx.proxy.model import ProxyModel, Step, build_proxy
from darp_onnx.proxy.registry import (
    OnnxMapping,
    OperationConverterResult,
    add_converter,
    registered_keys,
    supported_ops,
)

__all__ = [
    "OnnxMapping",
    "OperationConverterResult",
    "ProxyModel",
    "Step",
    "add_converter",
    "build_proxy",
    "registered_keys",
    "supported_ops",
]
