"""Hand-built models for the diff tests: a small CNN and its hand-"pruned" copy."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_case import IR_VERSION


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def cnn(c1: int = 8, *, drop_relu: bool = False, named: bool = True, size: int = 16) -> onnx.ModelProto:
    """conv1(c1) -> relu1 -> conv2(8) -> relu2 -> GAP -> Flatten -> Gemm(10); `drop_relu` removes relu1."""
    name = (lambda n: n) if named else (lambda n: "")
    pads = [1, 1, 1, 1]
    nodes = [helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], name=name("conv1"), pads=pads)]
    conv2_in = "c1"
    if not drop_relu:
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name=name("relu1")))
        conv2_in = "r1"
    nodes += [
        helper.make_node("Conv", [conv2_in, "conv2.w", "conv2.b"], ["c2"], name=name("conv2"), pads=pads),
        helper.make_node("Relu", ["c2"], ["r2"], name=name("relu2")),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name=name("gap")),
        helper.make_node("Flatten", ["gap"], ["flat"], name=name("flatten")),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name=name("fc"), transB=1),
    ]
    inits = {
        "conv1.w": _w(c1, 3, 3, 3),
        "conv1.b": _w(c1),
        "conv2.w": _w(8, c1, 3, 3),
        "conv2.b": _w(8),
        "fc.w": _w(10, 8),
        "fc.b": _w(10),
    }
    return _model(nodes, inits, ["N", 3, size, size], ["N", 10])


def depthwise(channels: int = 8) -> onnx.ModelProto:
    """conv(channels) -> depthwise conv (group=channels): pruning changes the `group` attribute."""
    nodes = [
        helper.make_node("Conv", ["x", "pw.w"], ["p"], name="pw"),
        helper.make_node("Conv", ["p", "dw.w"], ["y"], name="dw", group=channels, pads=[1, 1, 1, 1]),
    ]
    inits = {"pw.w": _w(channels, 4, 1, 1), "dw.w": _w(channels, 1, 3, 3)}
    return _model(nodes, inits, [1, 4, 8, 8], [1, channels, 8, 8])


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model
