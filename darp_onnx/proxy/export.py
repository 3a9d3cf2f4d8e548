"""Write a proxy's (trained) weights back into its ONNX model.

Reads only the proxy's `weights` and `param_sources`, so `proxy.model` imports this module and not
the other way round."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from darp_onnx.load.constants import TensorSource
from darp_onnx.proxy.context import onnx_to_torch_dtype


class WeightCarrier(Protocol):
    """What the export reads from a proxy: its weights by key and the ONNX tensor each came from."""

    weights: Mapping[str, torch.Tensor]
    param_sources: Mapping[str, TensorSource]


def _array(tensor: torch.Tensor, onnx_dtype: int) -> np.ndarray:
    target = onnx_to_torch_dtype(onnx_dtype, compute=False)
    value = tensor.detach().to("cpu")
    if target == torch.bfloat16:  # numpy has no bfloat16: onnx stores it from float32 via helper
        return value.float().numpy()
    return value.to(target).numpy()


def _make_tensor(name: str, array: np.ndarray, onnx_dtype: int) -> onnx.TensorProto:
    if onnx_dtype == onnx.TensorProto.BFLOAT16:
        return helper.make_tensor(name, onnx_dtype, array.shape, array.flatten().tolist())
    return numpy_helper.from_array(array, name)


def proxy_to_onnx(proxy: WeightCarrier, model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose weights (initializers and Constant-node tensors) hold the proxy's
    current parameter values, each in its original ONNX dtype. `model` itself is not changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_tensor = {src.name: (key, src) for key, src in proxy.param_sources.items() if key in proxy.weights}
    for init in out.graph.initializer:
        if init.name in by_tensor:
            key, src = by_tensor[init.name]
            init.CopyFrom(_make_tensor(init.name, _array(proxy.weights[key], src.onnx_dtype), src.onnx_dtype))
    for node in out.graph.node:
        if node.op_type != "Constant" or not node.output or node.output[0] not in by_tensor:
            continue
        key, src = by_tensor[node.output[0]]
        value = _make_tensor(node.output[0], _array(proxy.weights[key], src.onnx_dtype), src.onnx_dtype)
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", value))
    return out
