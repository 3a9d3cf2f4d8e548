"""Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Shape, Size, DepthToSpace, SpaceToDepth vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand
from tests.ops.multi_node import graph_model

X = rand(2, 3, 4, 5)
I64 = np.int64


def _arr(*v):
    return np.array(v, dtype=I64)


# (id, op, graph inputs, initializers, opset, attributes)
CASES = [
    ("flatten-default", "Flatten", {"x": X}, {}, 17, {}),
    ("flatten-axis0", "Flatten", {"x": X}, {}, 17, {"axis": 0}),
    ("flatten-axis2", "Flatten", {"x": X}, {}, 17, {"axis": 2}),
    ("flatten-axis4", "Flatten", {"x": X}, {}, 17, {"axis": 4}),
    ("flatten-axis-neg1", "Flatten", {"x": X}, {}, 17, {"axis": -1}),
    ("flatten-axis-neg3-op11", "Flatten", {"x": X}, {}, 11, {"axis": -3}),
    ("reshape-basic", "Reshape", {"x": X}, {"s": _arr(6, 20)}, 17, {}),
    ("reshape-zero-copies", "Reshape", {"x": X}, {"s": _arr(0, 0, -1)}, 17, {}),
    ("reshape-infer", "Reshape", {"x": X}, {"s": _arr(-1, 5)}, 17, {}),
    ("reshape-op13", "Reshape", {"x": X}, {"s": _arr(2, 0, 20)}, 13, {}),
    ("reshape-allowzero", "Reshape", {"x": np.zeros((0, 3), np.float32)}, {"s": _arr(3, 0)}, 17,
     {"allowzero": 1}),
    ("reshape-allowzero-nonzero", "Reshape", {"x": X}, {"s": _arr(4, 30)}, 17, {"allowzero": 1}),
    ("reshape-runtime-shape", "Reshape", {"x": X, "s": _arr(0, -1, 4)}, {}, 17, {}),
    ("transpose-default", "Transpose", {"x": X}, {}, 17, {}),
    ("transpose-perm", "Transpose", {"x": X}, {}, 17, {"perm": [0, 2, 3, 1]}),
    ("transpose-op11", "Transpose", {"x": X}, {}, 11, {"perm": [1, 0, 3, 2]}),
    ("squeeze-attr-op10", "Squeeze", {"x": rand(2, 1, 3, 1)}, {}, 10, {"axes": [1, 3]}),
    ("unsqueeze-attr-op10", "Unsqueeze", {"x": rand(2, 3)}, {}, 10, {"axes": [0, 2]}),
    ("depthtospace-op9", "DepthToSpace", {"x": rand(1, 8, 2, 3)}, {}, 9, {"blocksize": 2}),
    ("squeeze-attr-op11", "Squeeze", {"x": rand(2, 1, 3, 1)}, {}, 11, {"axes": [1]}),
    ("squeeze-attr-neg-op11", "Squeeze", {"x": rand(2, 1, 3, 1)}, {}, 11, {"axes": [-1, 1]}),
    ("squeeze-noaxes-op11", "Squeeze", {"x": rand(1, 2, 1, 3, 1)}, {}, 11, {}),
    ("squeeze-input-op13", "Squeeze", {"x": rand(2, 1, 3, 1)}, {"a": _arr(3)}, 13, {}),
    ("squeeze-input-neg-op17", "Squeeze", {"x": rand(2, 1, 3, 1)}, {"a": _arr(-3, -1)}, 17, {}),
    ("squeeze-noaxes-op17", "Squeeze", {"x": rand(1, 2, 1, 3, 1)}, {}, 17, {}),
    ("squeeze-runtime-axes", "Squeeze", {"x": rand(2, 1, 3, 1), "a": _arr(1)}, {}, 17, {}),
    ("unsqueeze-attr-op11", "Unsqueeze", {"x": rand(2, 3)}, {}, 11, {"axes": [0, 3]}),
    ("unsqueeze-attr-neg-op11", "Unsqueeze", {"x": rand(2, 3)}, {}, 11, {"axes": [-1]}),
    ("unsqueeze-input-op13", "Unsqueeze", {"x": rand(2, 3)}, {"a": _arr(1)}, 13, {}),
    ("unsqueeze-input-multi-op17", "Unsqueeze", {"x": rand(2, 3)}, {"a": _arr(-1, 0, 2)}, 17, {}),
    ("unsqueeze-scalar", "Unsqueeze", {"x": np.array(3.0, np.float32)}, {"a": _arr(0)}, 17, {}),
    ("unsqueeze-runtime-axes", "Unsqueeze", {"x": rand(2, 3), "a": _arr(2, 0)}, {}, 17, {}),
    ("shape-op13", "Shape", {"x": X}, {}, 13, {}),
    ("shape-start-end", "Shape", {"x": X}, {}, 15, {"start": 1, "end": 3}),
    ("shape-start-neg", "Shape", {"x": X}, {}, 15, {"start": -2}),
    ("shape-end-neg", "Shape", {"x": X}, {}, 17, {"end": -1}),
    ("shape-clamped", "Shape", {"x": X}, {}, 17, {"start": -10, "end": 10}),
    ("shape-empty", "Shape", {"x": X}, {}, 17, {"start": 3, "end": 1}),
    ("size", "Size", {"x": X}, {}, 17, {}),
    ("size-op11", "Size", {"x": rand(7)}, {}, 11, {}),
    ("depthtospace-dcr", "DepthToSpace", {"x": rand(2, 8, 3, 4)}, {}, 17, {"blocksize": 2}),
    ("depthtospace-dcr-explicit", "DepthToSpace", {"x": rand(1, 18, 2, 3)}, {}, 13,
     {"blocksize": 3, "mode": "DCR"}),
    ("depthtospace-crd", "DepthToSpace", {"x": rand(2, 8, 3, 4)}, {}, 17, {"blocksize": 2, "mode": "CRD"}),
    ("spacetodepth", "SpaceToDepth", {"x": rand(2, 3, 4, 6)}, {}, 17, {"blocksize": 2}),
    ("spacetodepth-bs3", "SpaceToDepth", {"x": rand(1, 2, 6, 3)}, {}, 13, {"blocksize": 3}),
]


@pytest.mark.parametrize("op,inputs,inits,opset,attrs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_single_op(op, inputs, inits, opset, attrs):
    model = one_node_model(op, inputs, initializers=inits, opset=opset, **attrs)
    assert_matches_ort(model, inputs)


def test_shape_reshape_symbolic_batch():
    """Shape -> Concat -> Reshape follows the batch size of each call."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
        helper.make_node("Concat", ["s", "rest"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (np.float32, ["N", 3, 4])}, initializers={"rest": _arr(-1)})
    for n in (2, 5):
        assert_matches_ort(model, {"x": rand(n, 3, 4, seed=n)})


def test_flatten_unsqueeze_squeeze_symbolic_batch():
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Unsqueeze", ["f", "ax"], ["u"]),
        helper.make_node("Transpose", ["u"], ["t"], perm=[1, 0, 2]),
        helper.make_node("Squeeze", ["t", "ax0"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (np.float32, ["N", 2, 3])}, initializers={"ax": _arr(1), "ax0": _arr(0)})
    for n in (1, 4):
        assert_matches_ort(model, {"x": rand(n, 2, 3, seed=n)})


def test_size_and_shape_symbolic_batch():
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=-2), helper.make_node("Size", ["x"], ["n"])]
    model = graph_model(nodes, {"x": (np.float32, ["N", 2, 3])}, outputs=("s", "n"))
    for n in (1, 3):
        assert_matches_ort(model, {"x": rand(n, 2, 3, seed=n)})


def test_depth_to_space_bad_mode():
    model = one_node_model("DepthToSpace", {"x": rand(1, 4, 2, 2)}, opset=17, blocksize=2)
    model.graph.node[0].attribute[-1].CopyFrom(helper.make_attribute("mode", "XYZ"))
    with pytest.raises(UnsupportedOpError, match="mode"):
        build_proxy(model)


def test_reshape_gradient_reaches_weight():
    w = rand(4, 6)
    model = one_node_model("Reshape", {}, initializers={"w": w, "s": _arr(3, 8)}, opset=17)
    proxy = build_proxy(model)
    proxy().sum().backward()
    (param,) = proxy.parameters()
    assert param.grad is not None and torch.isfinite(param.grad).all()


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_inverts_depth_to_space(mode):
    """SpaceToDepth's CRD mode (opset 28; onnxruntime has no kernel yet) undoes DepthToSpace in the same mode."""
    x = rand(2, 12, 3, 4)
    nodes = [helper.make_node("DepthToSpace", ["x"], ["s"], blocksize=2, mode=mode),
             helper.make_node("SpaceToDepth", ["s"], ["y"], blocksize=2, mode=mode)]
    model = graph_model(nodes, {"x": (np.float32, [2, 12, 3, 4])}, opset=28)
    y = build_proxy(model)(torch.from_numpy(x))
    np.testing.assert_array_equal(y.numpy(), x)


def test_space_to_depth_crd_moves_the_block_offset_after_the_channel():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    model = one_node_model("SpaceToDepth", {"x": x}, opset=28, blocksize=2, mode="CRD")
    y = build_proxy(model)(torch.from_numpy(x)).numpy()
    # output channel c * 4 + (row offset * 2 + column offset) holds x[c, 2i + row offset, 2j + column offset]
    np.testing.assert_array_equal(y[0, 1], x[0, 0, 0::2, 1::2])
    np.testing.assert_array_equal(y[0, 6], x[0, 1, 1::2, 0::2])
