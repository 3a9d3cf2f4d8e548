"""Concat, Split and Slice vs onnxruntime, in their attribute and input forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand
from tests.ops.multi_node import graph_model

I64 = np.int64
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def _arr(*v):
    return np.array(v, dtype=I64)


@pytest.mark.parametrize(
    "axis,opset", [(0, 17), (1, 17), (2, 17), (-1, 17), (-3, 11), (1, 4)],
    ids=["axis0", "axis1", "axis2", "axis-neg1", "axis-neg3-op11", "axis1-op4"],
)
def test_concat(axis, opset):
    feeds = {}
    for i, name in enumerate("abc"):
        shape = [2, 3, 4]
        shape[axis] = i + 1  # a different size along the concatenated axis
        feeds[name] = rand(*shape, seed=i)
    a, b, c = feeds.values()
    model = one_node_model("Concat", {"a": a, "b": b, "c": c}, opset=opset, axis=axis)
    assert_matches_ort(model, {"a": a, "b": b, "c": c})


def test_concat_uneven_with_initializer():
    a, w = rand(2, 3, seed=1), rand(2, 5, seed=2)
    model = one_node_model("Concat", {"a": a}, initializers={"w": w}, axis=-1)
    assert_matches_ort(model, {"a": a})


def test_concat_int64_shapes():
    a, b = _arr(2, 3), _arr(-1)
    model = one_node_model("Concat", {"a": a, "b": b}, axis=0)
    assert_matches_ort(model, {"a": a, "b": b})


X = rand(6, 8, seed=4)

# (id, graph inputs, initializers, input order, n outputs, opset, attributes)
SPLIT_CASES = [
    ("equal-op11", {"x": X}, {}, None, 3, 11, {}),
    ("attr-op11", {"x": X}, {}, None, 3, 11, {"axis": 1, "split": [2, 5, 1]}),
    ("attr-neg-axis-op12", {"x": X}, {}, None, 2, 12, {"axis": -2, "split": [4, 2]}),
    ("attr-op7", {"x": X}, {}, None, 2, 7, {"split": [1, 5]}),
    ("equal-op13", {"x": X}, {}, None, 2, 13, {"axis": 1}),
    ("input-op13", {"x": X}, {"s": _arr(3, 3, 2)}, None, 3, 13, {"axis": 1}),
    ("input-op18", {"x": X}, {"s": _arr(1, 5)}, None, 2, 18, {}),
    ("runtime-input-op18", {"x": X, "s": _arr(2, 2, 4)}, {}, None, 3, 18, {"axis": -1}),
    ("num-outputs-even-op18", {"x": X}, {}, None, 4, 18, {"axis": 1, "num_outputs": 4}),
    ("num-outputs-uneven-op18", {"x": rand(7, 3)}, {}, None, 4, 18, {"num_outputs": 4}),
    ("num-outputs-uneven2-op18", {"x": rand(3, 11)}, {}, None, 3, 18, {"axis": 1, "num_outputs": 3}),
    ("single-output-op18", {"x": X}, {}, None, 1, 18, {"num_outputs": 1}),
]


@pytest.mark.parametrize("inputs,inits,order,n,opset,attrs", [c[1:] for c in SPLIT_CASES],
                         ids=[c[0] for c in SPLIT_CASES])
def test_split(inputs, inits, order, n, opset, attrs):
    outputs = [f"y{i}" for i in range(n)]
    model = one_node_model("Split", inputs, initializers=inits, input_order=order, outputs=outputs,
                           opset=opset, **attrs)
    assert_matches_ort(model, inputs)


def test_split_num_outputs_empty_last_chunk_rejected():
    """5 into 4 chunks of ceil(5/4)=2 leaves nothing for the last one; onnxruntime rejects it too."""
    x = rand(5)
    model = one_node_model("Split", {"x": x}, outputs=["a", "b", "c", "d"], opset=18, num_outputs=4)
    with pytest.raises(ValueError, match="cannot split"):
        build_proxy(model)(torch.from_numpy(x))


def test_split_symbolic_batch_equal():
    """Equal split along a symbolic batch axis: the part sizes follow each call's batch."""
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=0)]
    model = graph_model(nodes, {"x": (np.float32, ["N", 3])}, outputs=("a", "b"), opset=13)
    for n in (2, 6):
        assert_matches_ort(model, {"x": rand(n, 3, seed=n)})


S = rand(5, 6, 7, seed=5)

# (id, graph inputs, initializers, input order, opset, attributes)
SLICE_CASES = [
    ("attr-op9", {"x": S}, {}, None, 9, {"starts": [1, 0], "ends": [4, 5], "axes": [0, 2]}),
    ("attr-noaxes-op9", {"x": S}, {}, None, 9, {"starts": [1, 2], "ends": [3, 100]}),
    ("attr-neg-op9", {"x": S}, {}, None, 9, {"starts": [-3], "ends": [-1], "axes": [-1]}),
    ("input-starts-ends-op10", {"x": S}, {"st": _arr(0, 1), "en": _arr(2, 5)}, None, 10, {}),
    ("input-axes-op13", {"x": S}, {"st": _arr(1), "en": _arr(6), "ax": _arr(2)}, None, 13, {}),
    ("input-steps", {"x": S}, {"st": _arr(0, 1), "en": _arr(5, 7), "ax": _arr(0, 2), "sp": _arr(2, 3)},
     None, 17, {}),
    ("neg-steps", {"x": S}, {"st": _arr(-1, 5), "en": _arr(INT64_MIN, 0), "ax": _arr(1, 2),
                             "sp": _arr(-1, -2)}, None, 17, {}),
    ("neg-step-clamped-start", {"x": S}, {"st": _arr(100), "en": _arr(-100), "ax": _arr(0), "sp": _arr(-2)},
     None, 17, {}),
    ("int64-max-end", {"x": S}, {"st": _arr(2), "en": _arr(INT64_MAX), "ax": _arr(-1)}, None, 17, {}),
    ("neg-indices", {"x": S}, {"st": _arr(-4, -5), "en": _arr(-1, -2), "ax": _arr(1, 2)}, None, 17, {}),
    ("empty-result", {"x": S}, {"st": _arr(4), "en": _arr(2), "ax": _arr(0)}, None, 17, {}),
    ("omitted-axes-with-steps", {"x": S}, {"st": _arr(0, 0), "en": _arr(5, 6), "sp": _arr(1, 2)},
     ["x", "st", "en", "", "sp"], 17, {}),
    ("runtime-inputs", {"x": S, "st": _arr(1, -6), "en": _arr(INT64_MAX, 5), "ax": _arr(0, -1),
                        "sp": _arr(2, 1)}, {}, None, 17, {}),
]


@pytest.mark.parametrize("inputs,inits,order,opset,attrs", [c[1:] for c in SLICE_CASES],
                         ids=[c[0] for c in SLICE_CASES])
def test_slice(inputs, inits, order, opset, attrs):
    model = one_node_model("Slice", inputs, initializers=inits, input_order=order, opset=opset, **attrs)
    assert_matches_ort(model, inputs)


def test_shape_slice_concat_symbolic_batch():
    """Shape -> Slice -> Concat -> Reshape at two batch sizes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "rest"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["r"]),
        helper.make_node("Slice", ["r", "st", "en", "ax", "sp"], ["y"]),
    ]
    inits = {"zero": _arr(0), "one": _arr(1), "rest": _arr(-1), "st": _arr(-1), "en": _arr(INT64_MIN),
             "ax": _arr(1), "sp": _arr(-3)}
    model = graph_model(nodes, {"x": (np.float32, ["N", 3, 4])}, initializers=inits)
    for n in (1, 3):
        assert_matches_ort(model, {"x": rand(n, 3, 4, seed=n)})


def test_slice_and_split_gradients():
    w = rand(6, 4)
    nodes = [
        helper.make_node("Slice", ["w", "st", "en", "ax", "sp"], ["s"]),
        helper.make_node("Split", ["s"], ["a", "b"], axis=1, num_outputs=2),
        helper.make_node("Concat", ["b", "a"], ["y"], axis=0),
    ]
    inits = {"w": w, "st": _arr(-1), "en": _arr(INT64_MIN), "ax": _arr(0), "sp": _arr(-2)}
    model = graph_model(nodes, {}, initializers=inits, opset=18)
    proxy = build_proxy(model)
    (proxy() * torch.arange(12.0).reshape(6, 2)).sum().backward()
    (param,) = proxy.parameters()
    assert param.grad is not None and torch.isfinite(param.grad).all()
    assert param.grad[1::2].abs().sum() > 0 and param.grad[0::2].abs().sum() == 0
