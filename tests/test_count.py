"""The independent MACs / parameter count over an ONNX graph, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.cost import count_graph
from tests.onnx_case import IR_VERSION


def _model(nodes, inits, x_shape, y_name="y"):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def test_conv_flatten_gemm():
    inits = {
        "w": np.zeros((4, 3, 3, 3), np.float32),
        "b": np.zeros(4, np.float32),
        "fc_w": np.zeros((10, 256), np.float32),
        "fc_b": np.zeros(10, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    count = count_graph(_model(nodes, inits, ["N", 3, 8, 8]))
    assert count.node_macs == {"conv": 4 * 8 * 8 * 3 * 9, "fc": 256 * 10}
    assert count.params == 4 * 27 + 4 + 2560 + 10


@pytest.mark.parametrize(("group", "w_shape", "expected"), [(1, (8, 8, 3, 3), 8 * 16 * 8 * 9),
                                                            (8, (8, 1, 3, 3), 8 * 16 * 9),
                                                            (2, (8, 4, 3, 3), 8 * 16 * 4 * 9)])
def test_grouped_conv(group, w_shape, expected):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1], group=group)]
    count = count_graph(_model(nodes, {"w": np.zeros(w_shape, np.float32)}, [1, 8, 4, 4]))
    assert count.macs == expected


def test_conv_transpose():
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])]
    count = count_graph(_model(nodes, {"w": np.zeros((6, 5, 2, 2), np.float32)}, [1, 6, 4, 4]))
    assert count.macs == 6 * 16 * 5 * 4


def test_batched_matmul_between_activations():
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="t", perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["x", "xt"], ["y"], name="scores"),
    ]
    count = count_graph(_model(nodes, {}, [1, 4, 10, 16]))
    assert count.macs == 4 * 10 * 10 * 16
    assert count.params == 0


def test_symbolic_spatial_dims_need_input_shapes():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    model = _model(nodes, {"w": np.zeros((2, 3, 1, 1), np.float32)}, ["N", 3, "H", "W"])
    with pytest.raises(Exception, match="--input-shape x="):
        count_graph(model)
    assert count_graph(model, {"x": (1, 3, 5, 5)}).macs == 2 * 25 * 3
