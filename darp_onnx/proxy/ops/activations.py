"""Activation functions: Relu, LeakyRelu, PRelu, Elu, Selu, Sigmoid, HardSigmoid, HardSwish, Tanh,
Softplus, Gelu, Mish, Clip, Softmax, LogSoftmax."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from darp_onnx.proxy.context import node_attributes
from darp_onnx.proxy.ops.common import FunctionModule, result_for
from darp_onnx.proxy.registry import add_converter

__all__ = ["convert_relu"]


@add_converter("Relu")
def convert_relu(node, ctx):
    return result_for(node, FunctionModule(torch.relu, "relu"))


@add_converter("Sigmoid")
def convert_sigmoid(node, ctx):
    return result_for(node, FunctionModule(torch.sigmoid, "sigmoid"))
