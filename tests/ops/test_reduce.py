"""Reduce* ops (axes as attribute and as input), ArgMax and ArgMin vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand
from tests.ops.multi_node import graph_model

I64 = np.int64
X = rand(3, 4, 5, seed=1)
POS = rand(3, 4, 5, seed=2, low=0.5, high=1.5)  # for ReduceLogSum / ReduceProd

REDUCE_OPS = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]
AXES_INPUT_SINCE = {op: 18 for op in REDUCE_OPS} | {"ReduceSum": 13}

# (id, axes, keepdims, noop_with_empty_axes, axes form: "attr" | "init" | "runtime" | "none")
VARIANTS = [
    ("axes1-keep", [1], 1, 0, "attr"),
    ("axes-neg-nokeep", [-1, 0], 0, 0, "attr"),
    ("all-default", None, 1, 0, "attr"),
    ("all-nokeep", None, 0, 0, "attr"),
    ("input-axes-keep", [1], 1, 0, "init"),
    ("input-axes-neg-nokeep", [0, -1], 0, 0, "init"),
    ("input-empty-axes-all", [], 0, 0, "init"),
    ("input-omitted-all", None, 1, 0, "none"),
    ("input-noop-empty", [], 1, 1, "init"),
    ("input-noop-omitted", None, 0, 1, "none"),
    ("input-runtime-axes", [2, 1], 0, 0, "runtime"),
]


def _case(op, axes, keepdims, noop, form):
    data = POS if op in ("ReduceLogSum", "ReduceProd") else X
    since = AXES_INPUT_SINCE[op]
    attrs = {"keepdims": keepdims}
    inputs, inits = {"x": data}, {}
    if form == "attr":
        opset = since - 1 if since == 18 else 11
        if axes is not None:
            attrs["axes"] = axes
    else:
        opset = since
        attrs["noop_with_empty_axes"] = noop
        if form == "init":
            inits["a"] = np.array(axes, I64)
        elif form == "runtime":
            inputs["a"] = np.array(axes, I64)
    return one_node_model(op, inputs, initializers=inits, opset=opset, **attrs), inputs


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce(op, variant):
    model, feeds = _case(op, *variant[1:])
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize(
    "op,opset,attrs",
    [("ReduceSum", 17, {}), ("ReduceMax", 17, {"axes": [0]}), ("ReduceMin", 18, {"keepdims": 0}),
     ("ReduceProd", 13, {"axes": [1], "keepdims": 0}), ("ReduceMean", 13, {"axes": [1]})],
    ids=["sum-op17", "max-op17", "min-op18", "prod-op13", "mean-op13"],
)
def test_reduce_int(op, opset, attrs):
    x = np.random.default_rng(0).integers(-5, 6, (3, 4)).astype(np.int32)
    if op == "ReduceProd":
        x = np.where(x == 0, 1, x) % 3 + 1
    model = one_node_model(op, {"x": x}, opset=opset, **attrs)
    assert_matches_ort(model, {"x": x})


TIES = np.array([[1, 3, 3, 0], [2, 2, 0, 0], [5, 5, 5, 5]], np.float32)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize(
    "data,opset,attrs",
    [
        (X, 17, {}),
        (X, 17, {"axis": 2, "keepdims": 0}),
        (X, 11, {"axis": -2}),
        (X, 9, {"axis": 1, "keepdims": 0}),
        (TIES, 17, {"axis": 1}),
        (TIES, 12, {"axis": 1, "select_last_index": 1}),
        (TIES, 17, {"axis": -1, "keepdims": 0, "select_last_index": 1}),
        (TIES, 13, {"axis": 0, "select_last_index": 1}),
    ],
    ids=["default", "axis2-nokeep", "axis-neg-op11", "op9", "ties-first", "ties-last-op12",
         "ties-last-nokeep", "ties-last-axis0"],
)
def test_arg(op, data, opset, attrs):
    model = one_node_model(op, {"x": data}, opset=opset, **attrs)
    assert_matches_ort(model, {"x": data})


def test_reduce_axes_from_shape_symbolic_batch():
    """Axes computed at run time (Shape -> Size -> Range) reduce every axis whatever the batch."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Size", ["s"], ["r"]),
        helper.make_node("Range", ["one", "r", "one"], ["axes"]),
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "zero"], ["y"], keepdims=1),
        helper.make_node("ArgMax", ["m"], ["i"], axis=0, keepdims=0),
    ]
    model = graph_model(nodes, {"x": (np.float32, ["N", 3, 4])}, outputs=("y", "i"),
                        initializers={"one": np.array(1, I64), "zero": np.array([0], I64)}, opset=18)
    for n in (2, 5):
        assert_matches_ort(model, {"x": rand(n, 3, 4, seed=n)})


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_gradient(op):
    w = rand(3, 4, seed=3, low=0.5, high=1.5)
    model = one_node_model(op, {}, initializers={"w": w, "a": np.array([1], I64)}, opset=18, keepdims=0)
    proxy = build_proxy(model)
    proxy().sum().backward()
    (param,) = proxy.parameters()
    assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


# id -> (op, keepdims, input dtype); reducing an empty axis gives the identity (-inf for max, +inf for min)
EMPTY_CASES = {
    "max_keepdims": ("ReduceMax", 1, np.float32),
    "min_keepdims": ("ReduceMin", 1, np.float32),
    "max_no_keepdims": ("ReduceMax", 0, np.float32),
    "min_int64": ("ReduceMin", 1, np.int64),
}


@pytest.mark.parametrize("case", EMPTY_CASES, ids=list(EMPTY_CASES))
def test_reduce_extreme_over_empty_axis(case):
    op, keepdims, dtype = EMPTY_CASES[case]
    x = np.zeros((2, 0, 4), dtype=dtype)
    model = one_node_model(op, {"x": x}, initializers={"axes": np.array([1], I64)}, opset=18, keepdims=keepdims)
    assert_matches_ort(model, {"x": x})


def test_reduce_max_bool_over_empty_axis_is_false():
    """onnxruntime refuses bool here; the ONNX reference gives max's identity, False (min: True)."""
    x = np.zeros((2, 0, 4), dtype=bool)
    for op, identity in (("ReduceMax", False), ("ReduceMin", True)):
        model = one_node_model(op, {"x": x}, initializers={"axes": np.array([1], I64)}, opset=20)
        y = build_proxy(model)(torch.from_numpy(x))
        assert y.shape == (2, 1, 4) and y.dtype == torch.bool and bool((y == identity).all())


@pytest.mark.parametrize("opset", [10, 12], ids=["schema1-opset10", "schema11-opset12"])
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_axes_attribute_older_schemas(op, opset):
    """The axes-attribute schema versions 1 (opsets 1-10) and 11 (11-12, negative axes allowed)."""
    data = POS if op in ("ReduceLogSum", "ReduceProd") else X
    axes = [0, 2] if opset == 10 else [-1, 0]
    model = one_node_model(op, {"x": data}, opset=opset, axes=axes, keepdims=0)
    assert_matches_ort(model, {"x": data})
