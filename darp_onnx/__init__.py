"""darp-onnx: prune ONNX models at graph level with a differentiable architecture search."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from darp_onnx.errors import BadInputError, DarpError, UnsupportedOpError, ValidationFailedError

try:
    __version__ = version("darp-onnx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = [
    "BadInputError",
    "DarpError",
    "UnsupportedOpError",
    "ValidationFailedError",
    "__version__",
    "check_model",
    "diff",
    "finetune",
    "inspect",
    "prune",
    "validate",
]

_API = ("prune", "finetune", "inspect", "validate", "diff", "check_model")


def __getattr__(name: str):
    # The API pulls in torch and onnxruntime; load it on first use so `darp-onnx --version` stays fast.
    if name in _API:
        from darp_onnx import api

        return getattr(api, name)
    raise AttributeError(f"module 'darp_onnx' has no attribute {name!r}")
