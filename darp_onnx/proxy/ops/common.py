"""Small helpers shared by the converters."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import onnx
import torch
from torch import nn

from darp_onnx.proxy.registry import OnnxMapping, OperationConverterResult, add_converter

__all__ = ["FunctionModule", "register_functions", "result_for", "static_int_list", "to_int_list"]


def result_for(
    node: onnx.NodeProto, module: nn.Module, static_inputs: Iterable[int] = ()
) -> OperationConverterResult:
    """The usual result: the module reads the node's inputs and writes its outputs, in order."""
    return OperationConverterResult(
        torch_module=module,
        onnx_mapping=OnnxMapping(inputs=tuple(node.input), outputs=tuple(node.output)),
        static_inputs=frozenset(static_inputs),
    )


class FunctionModule(nn.Module):
    """Wraps a stateless torch function of the node's inputs (elementwise ops and the like)."""

    def __init__(self, fn: Callable[..., torch.Tensor], name: str = "") -> None:
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)

    def extra_repr(self) -> str:
        return self.name


def to_int_list(tensor: torch.Tensor | None) -> list[int] | None:
    """A run-time shape/axes tensor as Python ints (shape arithmetic happens in torch at run time)."""
    if tensor is None:
        return None
    return [int(v) for v in tensor.reshape(-1).tolist()]


def static_int_list(value) -> list[int] | None:
    if value is None:
        return None
    return [int(v) for v in value.reshape(-1).tolist()]


def register_functions(table: dict[str, Callable[..., torch.Tensor]]) -> None:
    """Register, for every schema version, ops that are one torch function of their inputs."""
    for op_type, fn in table.items():
        _register_function(op_type, fn)


def _register_function(op_type: str, fn: Callable[..., torch.Tensor]) -> None:
    @add_converter(op_type)
    def convert(node, ctx):
        return result_for(node, FunctionModule(fn, op_type.lower()))
