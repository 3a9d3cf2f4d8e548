"""The ONNX rewriter: apply channel masks and branch drops to the graph itself."""

from darp_onnx.rewrite.rewriter import rewrite

__all__ = ["rewrite"]
