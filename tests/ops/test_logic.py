"""Comparison and logic converters against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand, run_ort, run_proxy


def ints(*shape: int, dtype=np.int32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3, 4, size=shape).astype(dtype)


def bools(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.5


def case(case_id: str, op: str, inputs: dict, inits: dict | None = None, opset: int = 17, **attrs):
    return pytest.param(op, inputs, inits or {}, opset, attrs, id=case_id)


def assert_matches(model, feeds) -> None:
    """Values match onnxruntime, and so does the output dtype."""
    assert_matches_ort(model, feeds)
    for a, e in zip(run_proxy(model, feeds), run_ort(model, feeds), strict=True):
        assert a.dtype == e.dtype, f"dtype {a.dtype} != onnxruntime {e.dtype}"


X = rand(2, 3, 4)
# Rounded values so that equal pairs occur.
XR = np.round(rand(2, 3, 4) * 2) / 2
YR = np.round(rand(4, seed=1) * 2) / 2

COMPARE = [
    case(f"{op}-{form}-opset{opset}", op, ins, None, opset)
    for op, opsets in [
        ("Equal", (11, 13, 19)),
        ("Greater", (9, 13, 17)),
        ("Less", (9, 13, 17)),
        ("GreaterOrEqual", (12, 16, 17)),
        ("LessOrEqual", (12, 16, 17)),
    ]
    for opset in opsets
    for form, ins in [
        ("float-bcast", {"a": XR, "b": YR}),
        ("int32-bcast", {"a": ints(2, 3, 1), "b": ints(3, 4, seed=1)}),
        ("int64-same-shape", {"a": ints(3, 4, dtype=np.int64), "b": ints(3, 4, dtype=np.int64, seed=1)}),
    ]
] + [
    case("Equal-bool", "Equal", {"a": bools(3, 4), "b": bools(4, seed=1)}),
    case("Equal-int32-opset7", "Equal", {"a": ints(3, 4), "b": ints(4, seed=1)}, opset=7),
    case("Greater-float-opset7", "Greater", {"a": XR, "b": YR}, opset=7),
    case("Less-float-initializer", "Less", {"a": XR}, {"b": YR}),
]

LOGIC = [
    case(f"{op}-{form}-opset{opset}", op, ins, None, opset)
    for op in ("And", "Or", "Xor")
    for form, ins, opset in [
        ("same-shape", {"a": bools(3, 4), "b": bools(3, 4, seed=1)}, 7),
        ("bcast", {"a": bools(2, 3, 1), "b": bools(4, seed=1)}, 17),
    ]
] + [
    case("Not", "Not", {"a": bools(2, 3, 4)}),
]

WHERE = [
    case("Where-same-shape", "Where", {"c": bools(2, 3, 4), "x": X, "z": rand(2, 3, 4, seed=1)}),
    case("Where-bcast-all", "Where", {"c": bools(3, 1), "x": rand(2, 1, 4), "z": rand(4, seed=1)}),
    case("Where-int64-opset9", "Where", {"c": bools(3, 4), "x": ints(3, 4, dtype=np.int64),
                                         "z": ints(1, dtype=np.int64, seed=1)}, opset=9),
    case("Where-scalar-initializer", "Where", {"c": bools(3, 4), "x": rand(3, 4)},
         {"z": np.array(-1.0, np.float32)}),
    case("Where-uint8-opset16", "Where", {"c": bools(4), "x": ints(3, 4, dtype=np.uint8) % 7,
                                          "z": ints(3, 4, dtype=np.uint8, seed=2) % 5}, opset=16),
]

SPECIAL = np.array([[1.0, np.nan, np.inf, -np.inf], [0.0, -2.5, np.nan, np.inf]], np.float32)

NAN_INF = [
    case("IsNaN", "IsNaN", {"x": SPECIAL}),
    case("IsNaN-opset9", "IsNaN", {"x": SPECIAL}, opset=9),
    case("IsNaN-opset20", "IsNaN", {"x": SPECIAL}, opset=20),
    case("IsNaN-double", "IsNaN", {"x": SPECIAL.astype(np.float64)}),
    case("IsInf-default", "IsInf", {"x": SPECIAL}),
    case("IsInf-negative-only", "IsInf", {"x": SPECIAL}, detect_positive=0),
    case("IsInf-positive-only", "IsInf", {"x": SPECIAL}, detect_negative=0),
    case("IsInf-neither", "IsInf", {"x": SPECIAL}, detect_negative=0, detect_positive=0),
    case("IsInf-opset10", "IsInf", {"x": SPECIAL}, opset=10),
    case("IsInf-opset20-double", "IsInf", {"x": SPECIAL.astype(np.float64)}, opset=20),
]


@pytest.mark.parametrize("op,inputs,inits,opset,attrs", COMPARE + LOGIC + WHERE + NAN_INF)
def test_matches_onnxruntime(op, inputs, inits, opset, attrs):
    model = one_node_model(op, inputs, initializers=inits, opset=opset, **attrs)
    assert_matches(model, inputs)


def test_legacy_broadcast_opset1():
    """Opset-1 And aligns B at `axis` (onnxruntime has no kernel for it, so check with numpy)."""
    a, b = bools(2, 3, 4), bools(3, seed=1)
    model = one_node_model("And", {"a": a, "b": b}, opset=1, broadcast=1, axis=1)
    (actual,) = run_proxy(model, {"a": a, "b": b})
    np.testing.assert_array_equal(actual, a & b[:, None])


def test_where_gradients_reach_both_branches():
    c = bools(3, 4)
    model = one_node_model("Where", {"c": c}, initializers={"x": rand(3, 4), "z": rand(4, seed=1)})
    proxy = build_proxy(model)
    proxy(torch.from_numpy(c)).sum().backward()
    gx = proxy.weights[proxy.parameter_key("x")].grad
    gy = proxy.weights[proxy.parameter_key("z")].grad
    np.testing.assert_array_equal(gx.numpy(), c.astype(np.float32))
    np.testing.assert_array_equal(gy.numpy(), (~c).sum(axis=0).astype(np.float32))
