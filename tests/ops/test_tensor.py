"""Cast, CastLike, ConstantOfShape, Expand, Tile, Range, Identity, Dropout, EyeLike, NonZero, OneHot
vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand
from tests.ops.multi_node import graph_model

I64 = np.int64
F = rand(3, 4, seed=1) * 10
F[0, :2] = 0.0  # zeros for the bool casts
F[1, 0] = 1e-4  # rounds differently in float16


def _arr(*v, dtype=I64):
    return np.array(v, dtype=dtype)


def _value(array):
    return numpy_helper.from_array(np.asarray(array), "value")


T = TensorProto
# (id, op, graph inputs, initializers, input order, outputs, opset, attributes)
CASES = [
    ("cast-float-int32-trunc", "Cast", {"x": F}, {}, None, 1, 17, {"to": T.INT32}),
    ("cast-float-int64", "Cast", {"x": F}, {}, None, 1, 13, {"to": T.INT64}),
    ("cast-float-int8", "Cast", {"x": F}, {}, None, 1, 17, {"to": T.INT8}),
    ("cast-float-bool", "Cast", {"x": F}, {}, None, 1, 17, {"to": T.BOOL}),
    ("cast-float-float16", "Cast", {"x": F}, {}, None, 1, 17, {"to": T.FLOAT16}),
    ("cast-float-double", "Cast", {"x": F}, {}, None, 1, 17, {"to": T.DOUBLE}),
    ("cast-int64-float", "Cast", {"x": _arr(-3, 0, 7)}, {}, None, 1, 17, {"to": T.FLOAT}),
    ("cast-int64-int32", "Cast", {"x": _arr(-3, 0, 7)}, {}, None, 1, 17, {"to": T.INT32}),
    ("cast-bool-float", "Cast", {"x": np.array([True, False])}, {}, None, 1, 17, {"to": T.FLOAT}),
    ("cast-float16-float", "Cast", {"x": F.astype(np.float16)}, {}, None, 1, 17, {"to": T.FLOAT}),
    ("cast-op19", "Cast", {"x": F}, {}, None, 1, 19, {"to": T.INT32}),
    ("castlike-float16-init", "CastLike", {"x": F}, {"t": np.zeros(1, np.float16)}, None, 1, 17, {}),
    ("castlike-int32-input", "CastLike", {"x": F, "t": np.zeros(2, np.int32)}, {}, None, 1, 17, {}),
    ("castlike-double-op19", "CastLike", {"x": F, "t": np.zeros(2, np.float64)}, {}, None, 1, 19, {}),
    ("constantofshape-default", "ConstantOfShape", {}, {"s": _arr(2, 3)}, None, 1, 17, {}),
    ("constantofshape-int64", "ConstantOfShape", {}, {"s": _arr(4)}, None, 1, 17,
     {"value": _value(_arr(-7))}),
    ("constantofshape-float16", "ConstantOfShape", {}, {"s": _arr(2, 2)}, None, 1, 17,
     {"value": _value(np.array([1.1], np.float16))}),
    ("constantofshape-bool", "ConstantOfShape", {}, {"s": _arr(3)}, None, 1, 17,
     {"value": _value(np.array([True]))}),
    ("constantofshape-scalar", "ConstantOfShape", {}, {"s": np.zeros(0, I64)}, None, 1, 17,
     {"value": _value(np.array([2.5], np.float32))}),
    ("constantofshape-runtime-op9", "ConstantOfShape", {"s": _arr(3, 1, 2)}, {}, None, 1, 9,
     {"value": _value(np.array([0.5], np.float32))}),
    ("expand-same-rank", "Expand", {"x": rand(3, 1)}, {"s": _arr(3, 4)}, None, 1, 17, {}),
    ("expand-higher-rank", "Expand", {"x": rand(3, 1)}, {"s": _arr(2, 1, 5)}, None, 1, 17, {}),
    ("expand-shape-ones-bidirectional", "Expand", {"x": rand(2, 3, 4)}, {"s": _arr(1, 1)}, None, 1, 17, {}),
    ("expand-shape-shorter-op8", "Expand", {"x": rand(2, 1, 4)}, {"s": _arr(3, 1)}, None, 1, 8, {}),
    ("expand-runtime-shape", "Expand", {"x": rand(1, 3), "s": _arr(4, 1, 1)}, {}, None, 1, 17, {}),
    ("tile", "Tile", {"x": rand(2, 3)}, {"r": _arr(2, 3)}, None, 1, 17, {}),
    ("tile-ones", "Tile", {"x": rand(2, 3, 2)}, {"r": _arr(1, 2, 1)}, None, 1, 13, {}),
    ("tile-runtime-op6", "Tile", {"x": rand(2, 3), "r": _arr(3, 1)}, {}, None, 1, 6, {}),
    ("range-int64", "Range", {}, {"a": np.array(2, I64), "b": np.array(11, I64), "d": np.array(3, I64)},
     None, 1, 17, {}),
    ("range-int32-neg-delta", "Range", {},
     {"a": np.array(5, np.int32), "b": np.array(-4, np.int32), "d": np.array(-2, np.int32)}, None, 1, 17, {}),
    ("range-float", "Range", {},
     {"a": np.array(0.5, np.float32), "b": np.array(3.3, np.float32), "d": np.array(0.4, np.float32)},
     None, 1, 11, {}),
    ("range-empty", "Range", {}, {"a": np.array(5, I64), "b": np.array(2, I64), "d": np.array(1, I64)},
     None, 1, 17, {}),
    ("range-runtime-float", "Range",
     {"a": np.array(1.0, np.float32), "b": np.array(-2.0, np.float32), "d": np.array(-0.25, np.float32)},
     {}, None, 1, 17, {}),
    ("identity", "Identity", {"x": F}, {}, None, 1, 17, {}),
    ("identity-int", "Identity", {"x": _arr(1, 2)}, {}, None, 1, 13, {}),
    ("dropout-op12", "Dropout", {"x": F}, {}, None, 1, 12, {}),
    ("dropout-mask-op13", "Dropout", {"x": F}, {}, None, 2, 13, {}),
    ("dropout-ratio-mode-false", "Dropout", {"x": F},
     {"r": np.array(0.3, np.float32), "m": np.array(False)}, None, 2, 17, {}),
    ("dropout-ratio-attr-op10", "Dropout", {"x": F}, {}, None, 2, 10, {"ratio": 0.2}),
    ("dropout-op7", "Dropout", {"x": F}, {}, None, 1, 7, {}),
    ("eyelike", "EyeLike", {"x": rand(3, 4)}, {}, None, 1, 17, {}),
    ("eyelike-k1", "EyeLike", {"x": rand(4, 3)}, {}, None, 1, 17, {"k": 1}),
    ("eyelike-k-neg2-int64", "EyeLike", {"x": rand(4, 4)}, {}, None, 1, 17, {"k": -2, "dtype": T.INT64}),
    ("eyelike-int-input-op9", "EyeLike", {"x": np.zeros((2, 5), np.int32)}, {}, None, 1, 9, {}),
    ("nonzero-float", "NonZero", {"x": F}, {}, None, 1, 17, {}),
    ("nonzero-int", "NonZero", {"x": _arr(0, 3, 0, -1)}, {}, None, 1, 13, {}),
    ("nonzero-bool-3d", "NonZero", {"x": rand(2, 3, 4) > 0.2}, {}, None, 1, 9, {}),
    ("nonzero-none", "NonZero", {"x": np.zeros((2, 3), np.float32)}, {}, None, 1, 17, {}),
    ("onehot", "OneHot", {"i": _arr(0, 2, 1)},
     {"d": np.array(4, I64), "v": np.array([0.0, 1.0], np.float32)}, None, 1, 17, {}),
    ("onehot-axis0-neg-idx", "OneHot", {"i": np.array([[0, -1], [2, -3]], I64)},
     {"d": np.array(3, I64), "v": np.array([-2.0, 5.0], np.float32)}, None, 1, 17, {"axis": 0}),
    ("onehot-axis1-out-of-range-op9", "OneHot", {"i": np.array([[0, 7], [-9, 2]], I64)},
     {"d": _arr(3), "v": _arr(0, 1)}, None, 1, 9, {"axis": 1}),
    ("onehot-float-indices", "OneHot", {"i": np.array([0.0, 2.0, 1.0], np.float32)},
     {"d": np.array(3.0, np.float32), "v": np.array([2.0, 9.0], np.float32)}, None, 1, 11, {}),
    ("onehot-runtime-depth", "OneHot", {"i": _arr(1, 4), "d": np.array(5, I64)},
     {"v": np.array([0.0, 1.0], np.float32)}, None, 1, 17, {"axis": -2}),
]


@pytest.mark.parametrize("op,inputs,inits,order,n_out,opset,attrs", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_single_op(op, inputs, inits, order, n_out, opset, attrs):
    outputs = ("y", "mask")[:n_out]
    model = one_node_model(op, inputs, initializers=inits, input_order=order, outputs=outputs, opset=opset,
                           **attrs)
    assert_matches_ort(model, inputs)


def test_dropout_training_mode_constant_true_unsupported():
    model = one_node_model("Dropout", {"x": F}, initializers={"r": np.array(0.5, np.float32),
                                                               "m": np.array(True)}, opset=17)
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        build_proxy(model)


def test_cast_to_string_unsupported():
    model = one_node_model("Cast", {"x": F}, opset=17, to=T.FLOAT)
    model.graph.node[0].attribute[0].i = T.STRING
    with pytest.raises(UnsupportedOpError, match="Cast"):
        build_proxy(model)


def test_shape_driven_tensors_symbolic_batch():
    """Shape -> ConstantOfShape / Expand, Size -> Range: each follows the batch size of the call."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["c"], value=_value(_arr(1))),
        helper.make_node("Expand", ["b", "s"], ["e"]),
        helper.make_node("Size", ["x"], ["n"]),
        helper.make_node("Range", ["zero", "n", "two"], ["r"]),
        helper.make_node("Shape", ["x"], ["s0"], end=1),
        helper.make_node("Concat", ["s0", "one"], ["reps"], axis=0),
        helper.make_node("Tile", ["b", "reps"], ["t"]),
    ]
    inits = {"b": rand(1, 3), "zero": np.array(0, I64), "two": np.array(2, I64), "one": _arr(1)}
    model = graph_model(nodes, {"x": (np.float32, ["N", 3])}, outputs=("c", "e", "r", "t"),
                        initializers=inits)
    for n in (1, 4):
        assert_matches_ort(model, {"x": rand(n, 3, seed=n)})


def test_gradients_through_expand_tile_cast():
    w = rand(1, 3)
    nodes = [
        helper.make_node("Expand", ["w", "s"], ["e"]),
        helper.make_node("Tile", ["e", "r"], ["t"]),
        helper.make_node("Cast", ["t"], ["h"], to=T.FLOAT16),
        helper.make_node("Cast", ["h"], ["f"], to=T.FLOAT),
        helper.make_node("Dropout", ["f"], ["y"]),
    ]
    model = graph_model(nodes, {}, initializers={"w": w, "s": _arr(2, 3), "r": _arr(1, 2)})
    proxy = build_proxy(model)
    proxy().sum().backward()
    (param,) = proxy.parameters()
    assert param.grad is not None and torch.allclose(param.grad, torch.full((1, 3), 4.0))


def test_dropout_training_mode_at_run_time():
    """training_mode as a run-time input: zero ratio is the identity with an all-True mask; a random
    mask is refused with our error when the input turns training on."""
    feeds = {"x": F, "r": np.array(0.0, np.float32), "m": np.array(True)}
    model = one_node_model("Dropout", feeds, outputs=("y", "mask"), opset=13)
    assert_matches_ort(model, feeds)
    proxy = build_proxy(model)
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        proxy.run({**feeds, "r": np.array(0.5, np.float32)})
    y, _ = proxy(torch.from_numpy(F), torch.tensor(0.5), torch.tensor(False))
    np.testing.assert_array_equal(y.numpy(), F)
