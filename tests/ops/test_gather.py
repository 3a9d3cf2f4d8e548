"""Gather, GatherElements, GatherND, ScatterND, Trilu, CumSum, TopK and ReverseSequence vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand, run_ort, run_proxy
from tests.ops.multi_node import graph_model

I64 = np.int64
D = rand(4, 5, 6, seed=1)


def _arr(*v, dtype=I64):
    return np.array(v, dtype=dtype)


# (id, op, graph inputs, initializers, input order, opset, attributes)
CASES = [
    ("gather-axis0", "Gather", {"x": D}, {"i": _arr(3, 0, 1)}, None, 17, {}),
    ("gather-axis1-neg-idx", "Gather", {"x": D}, {"i": _arr(-1, 0, -5)}, None, 17, {"axis": 1}),
    ("gather-axis-neg1-2d-idx", "Gather", {"x": D}, {"i": np.array([[0, 5], [-2, 1]], I64)}, None, 17,
     {"axis": -1}),
    ("gather-scalar-idx", "Gather", {"x": D}, {"i": np.array(2, I64)}, None, 17, {"axis": 1}),
    ("gather-scalar-neg-idx-op11", "Gather", {"x": D}, {"i": np.array(-1, I64)}, None, 11, {}),
    ("gather-int32-idx", "Gather", {"x": D}, {"i": _arr(1, 2, dtype=np.int32)}, None, 13, {"axis": 2}),
    ("gather-runtime-idx", "Gather", {"x": D, "i": _arr(0, -1, 2)}, {}, None, 17, {"axis": 2}),
    ("gather-int64-data", "Gather", {"x": _arr(7, 8, 9)}, {"i": np.array(-1, I64)}, None, 17, {}),
    ("gatherelements-axis0", "GatherElements", {"x": D},
     {"i": np.random.default_rng(0).integers(-4, 4, (3, 5, 6))}, None, 17, {}),
    ("gatherelements-axis-neg1", "GatherElements", {"x": D},
     {"i": np.random.default_rng(1).integers(-6, 6, (4, 5, 2))}, None, 17, {"axis": -1}),
    ("gatherelements-runtime-op11", "GatherElements",
     {"x": D, "i": np.random.default_rng(2).integers(0, 5, (4, 3, 6))}, {}, None, 11, {"axis": 1}),
    ("gathernd-k1", "GatherND", {"x": D}, {"i": np.array([[1], [-1]], I64)}, None, 17, {}),
    ("gathernd-k2", "GatherND", {"x": D}, {"i": np.array([[[1, 2]], [[3, -1]]], I64)}, None, 17, {}),
    ("gathernd-k3-op11", "GatherND", {"x": D}, {"i": np.array([[0, 1, 2], [3, 4, 5]], I64)}, None, 11, {}),
    ("gathernd-batch1-op12", "GatherND", {"x": D}, {"i": np.array([[[1], [0]]] * 4, I64)}, None, 12,
     {"batch_dims": 1}),
    ("gathernd-batch1-k2", "GatherND", {"x": D}, {"i": np.array([[1, 5], [0, 0], [4, 2], [2, 3]], I64)},
     None, 17, {"batch_dims": 1}),
    ("scatternd-slices", "ScatterND", {"x": D, "u": rand(2, 5, 6, seed=3)}, {"i": np.array([[2], [0]], I64)},
     ["x", "i", "u"], 17, {}),
    ("scatternd-elements-op11", "ScatterND", {"x": D, "u": rand(3, seed=3)},
     {"i": np.array([[0, 1, 2], [3, 4, 5], [1, 1, 1]], I64)}, ["x", "i", "u"], 11, {}),
    ("scatternd-neg-idx-op13", "ScatterND", {"x": D, "u": rand(2, 6, seed=3)},
     {"i": np.array([[-1, -2], [0, 0]], I64)}, ["x", "i", "u"], 13, {}),
    ("scatternd-reduction-none-op16", "ScatterND", {"x": D, "u": rand(1, 6, seed=3)},
     {"i": np.array([[1, 1]], I64)}, ["x", "i", "u"], 16, {"reduction": "none"}),
    ("scatternd-add", "ScatterND", {"x": D, "u": rand(3, 6, seed=3)},
     {"i": np.array([[1, 1], [1, 1], [0, 2]], I64)}, ["x", "i", "u"], 16, {"reduction": "add"}),
    ("scatternd-mul", "ScatterND", {"x": D, "u": rand(3, 6, seed=3)},
     {"i": np.array([[1, 1], [1, 1], [0, 2]], I64)}, ["x", "i", "u"], 16, {"reduction": "mul"}),
    ("scatternd-max", "ScatterND", {"x": D, "u": rand(2, 5, 6, seed=3)},
     {"i": np.array([[1], [1]], I64)}, ["x", "i", "u"], 18, {"reduction": "max"}),
    ("scatternd-min", "ScatterND", {"x": D, "u": rand(2, 5, 6, seed=3)},
     {"i": np.array([[1], [3]], I64)}, ["x", "i", "u"], 18, {"reduction": "min"}),
    ("scatternd-runtime-idx", "ScatterND", {"x": D, "i": np.array([[3, 0, 0]], I64), "u": rand(1, seed=3)},
     {}, None, 17, {}),
    ("trilu-upper", "Trilu", {"x": D}, {}, None, 17, {}),
    ("trilu-lower", "Trilu", {"x": D}, {}, None, 17, {"upper": 0}),
    ("trilu-upper-k", "Trilu", {"x": D}, {"k": np.array(2, I64)}, None, 17, {}),
    ("trilu-lower-neg-k", "Trilu", {"x": D}, {"k": np.array(-1, I64)}, None, 17, {"upper": 0}),
    ("trilu-runtime-k", "Trilu", {"x": D, "k": np.array(-2, I64)}, {}, None, 17, {"upper": 1}),
    ("cumsum", "CumSum", {"x": D}, {"a": np.array(1, I64)}, None, 17, {}),
    ("cumsum-neg-axis", "CumSum", {"x": D}, {"a": np.array(-1, I64)}, None, 17, {}),
    ("cumsum-exclusive", "CumSum", {"x": D}, {"a": np.array(0, I64)}, None, 17, {"exclusive": 1}),
    ("cumsum-reverse", "CumSum", {"x": D}, {"a": np.array(2, I64)}, None, 17, {"reverse": 1}),
    ("cumsum-exclusive-reverse-op11", "CumSum", {"x": D}, {"a": np.array(1, I64)}, None, 11,
     {"exclusive": 1, "reverse": 1}),
    ("cumsum-int32", "CumSum", {"x": np.arange(12, dtype=np.int32).reshape(3, 4)}, {"a": np.array(1, I64)},
     None, 17, {}),
    ("cumsum-runtime-axis", "CumSum", {"x": D, "a": np.array(1, np.int32)}, {}, None, 17, {}),
    ("reversesequence-time-major", "ReverseSequence", {"x": D}, {"n": _arr(4, 1, 0, 3, 2)}, None, 17,
     {"time_axis": 0, "batch_axis": 1}),
    ("reversesequence-batch-major", "ReverseSequence", {"x": D}, {"n": _arr(5, 2, 1, 4)}, None, 10,
     {"time_axis": 1, "batch_axis": 0}),
    ("reversesequence-runtime-lengths", "ReverseSequence", {"x": D, "n": _arr(3, 3, 3, 3)}, {}, None, 17,
     {"time_axis": 1, "batch_axis": 0}),
    ("topk-op1-attr", "TopK", {"x": D}, {}, None, 9, {"k": 3}),
    ("topk-op10-input", "TopK", {"x": D}, {"k": _arr(2)}, None, 10, {"axis": 1}),
    ("topk-largest", "TopK", {"x": D}, {"k": _arr(4)}, None, 17, {}),
    ("topk-smallest", "TopK", {"x": D}, {"k": _arr(3)}, None, 17, {"largest": 0, "axis": 0}),
    ("topk-neg-axis", "TopK", {"x": D}, {"k": _arr(5)}, None, 17, {"axis": -2}),
    ("topk-ties", "TopK", {"x": np.array([[1, 3, 3, 0, 3, 1], [2, 2, 2, 2, 2, 2]], np.float32)},
     {"k": _arr(4)}, None, 17, {}),
    ("topk-ties-smallest", "TopK", {"x": np.array([[1, 3, 3, 0, 3, 1], [2, 2, 2, 2, 2, 2]], np.float32)},
     {"k": _arr(3)}, None, 17, {"largest": 0}),
    ("topk-runtime-k", "TopK", {"x": D, "k": _arr(3)}, {}, None, 17, {}),
    ("topk-k0", "TopK", {"x": D}, {"k": _arr(0)}, None, 17, {}),
]


@pytest.mark.parametrize("op,inputs,inits,order,opset,attrs", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_single_op(op, inputs, inits, order, opset, attrs):
    outputs = ("v", "i") if op == "TopK" else ("y",)
    model = one_node_model(op, inputs, initializers=inits, input_order=order, outputs=outputs, opset=opset,
                           **attrs)
    assert_matches_ort(model, inputs)


def test_topk_unsorted_same_elements():
    """sorted=0 leaves the order to the implementation: the proxy returns the same elements, sorted."""
    x = rand(3, 10, seed=7)
    model = one_node_model("TopK", {"x": x}, initializers={"k": _arr(4)}, outputs=("v", "i"), sorted=0)
    (ev, ei), (av, ai) = run_ort(model, {"x": x}), run_proxy(model, {"x": x})
    assert ai.dtype == np.int64 and av.shape == ev.shape
    np.testing.assert_array_equal(np.sort(ai, axis=1), np.sort(ei, axis=1))
    np.testing.assert_allclose(np.sort(av, axis=1), np.sort(ev, axis=1))


def test_shape_gather_symbolic_batch():
    """Shape -> Gather(scalar) -> Unsqueeze -> Concat -> Reshape, at two batch sizes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "rest"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["r"]),
        helper.make_node("Gather", ["r", "idx"], ["y"], axis=1),
    ]
    inits = {"zero": np.array(0, I64), "ax": _arr(0), "rest": _arr(-1), "idx": _arr(-1, 0, 5)}
    model = graph_model(nodes, {"x": (np.float32, ["N", 2, 3])}, initializers=inits)
    for n in (2, 5):
        assert_matches_ort(model, {"x": rand(n, 2, 3, seed=n)})


def test_gradients_reach_weights():
    w, u = rand(5, 6, seed=1), rand(2, 6, seed=2)
    nodes = [
        helper.make_node("Gather", ["w", "i"], ["g"], axis=0),
        helper.make_node("ScatterND", ["w", "j", "u"], ["s"]),
        helper.make_node("GatherElements", ["s", "e"], ["ge"], axis=1),
        helper.make_node("TopK", ["w", "k"], ["tv", "ti"], axis=1),
        helper.make_node("CumSum", ["tv", "a"], ["cs"]),
    ]
    inits = {"w": w, "u": u, "i": _arr(0, 3), "j": np.array([[1], [4]], I64),
             "e": np.zeros((5, 2), I64), "k": _arr(2), "a": np.array(1, I64)}
    model = graph_model(nodes, {}, outputs=("g", "ge", "cs"), initializers=inits)
    proxy = build_proxy(model)
    sum(o.sum() for o in proxy()).backward()
    params = list(proxy.parameters())
    assert len(params) == 2
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
