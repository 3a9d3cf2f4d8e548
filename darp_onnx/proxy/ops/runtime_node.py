"""A node the proxy has no converter for, run by onnxruntime: the front ends of `load/front_end.py`.

The node is written into a model of its own (its inputs, and for a Loop or If body the outer tensors it
reads, as graph inputs; its outputs typed as the graph types them) and run on the CPU each forward pass.
No gradient flows through it, which is why only front ends (no layer with weights before them) run this way.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import torch
from onnx import helper
from torch import nn

from darp_onnx.load.post_processing import subgraph_reads
from darp_onnx.proxy.context import ConvertContext
from darp_onnx.proxy.registry import OnnxMapping, OperationConverterResult


def _typed(name: str, ctx: ConvertContext, fallback: int) -> onnx.ValueInfoProto:
    info = ctx.value_info.get(name)
    elem = ctx.elem_type(name)
    if elem is None and name in ctx.constants:
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(ctx.constants[name]).dtype)
    rank = ctx.rank(name)
    if info is not None and rank is not None:
        return helper.make_tensor_value_info(name, elem or fallback, [None] * rank)
    return helper.make_tensor_value_info(name, elem or fallback, None)


def node_model(node: onnx.NodeProto, ctx: ConvertContext, opsets) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """The one-node model and the names it reads, in the order of its graph inputs."""
    reads = tuple(dict.fromkeys([n for n in node.input if n] + sorted(subgraph_reads(node))))
    inputs = [_typed(n, ctx, onnx.TensorProto.FLOAT) for n in reads]
    outputs = [_typed(n, ctx, onnx.TensorProto.FLOAT) for n in node.output if n]
    graph = helper.make_graph([copy.deepcopy(node)], f"runtime_{node.output[0]}", inputs, outputs)
    model = helper.make_model(graph, opset_imports=list(opsets))
    model.ir_version = min(model.ir_version, 10)
    return model, reads


class RuntimeNodeModule(nn.Module):
    """Runs one ONNX node with onnxruntime (CPU); outputs as tensors on the device of the first input."""

    def __init__(self, payload: bytes, op_type: str, input_names: tuple[str, ...], outputs: int) -> None:
        super().__init__()
        self.payload, self.op_type, self.input_names, self.outputs = payload, op_type, input_names, outputs
        self._session = None

    def __getstate__(self):  # copies and pickles rebuild the session when they first run
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 4
            self._session = ort.InferenceSession(self.payload, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self._session.get_inputs()]
        return self._session.run(None, {n: feeds[n] for n in names})

    def forward(self, *args: torch.Tensor):
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
        feeds = {n: a.detach().cpu().numpy() for n, a in zip(self.input_names, args, strict=True)}
        results = [torch.from_numpy(np.ascontiguousarray(r)).to(device) for r in self._run(feeds)]
        return results[0] if self.outputs == 1 else tuple(results)


def runtime_node_result(node: onnx.NodeProto, ctx: ConvertContext, opsets) -> OperationConverterResult:
    """The converter result for a front-end node (see module docstring): every input read as a constant."""
    model, reads = node_model(node, ctx, opsets)
    outputs = tuple(n for n in node.output if n)
    module = RuntimeNodeModule(model.SerializeToString(), node.op_type, reads, len(outputs))
    return OperationConverterResult(module, OnnxMapping(inputs=reads, outputs=outputs),
                                    static_inputs=frozenset(range(len(reads))))
