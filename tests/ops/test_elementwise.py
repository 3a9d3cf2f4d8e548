"""Elementwise arithmetic converters against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand, run_ort, run_proxy


def ints(*shape: int, low: int = -9, high: int = 10, dtype=np.int32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape).astype(dtype)


def nonzero_ints(*shape: int, dtype=np.int32, seed: int = 1) -> np.ndarray:
    values = ints(*shape, low=1, high=6, dtype=dtype, seed=seed)
    signs = np.where(np.random.default_rng(seed + 1).random(shape) < 0.5, -1, 1)
    return (values * signs).astype(dtype)


def case(case_id: str, op: str, inputs: dict, inits: dict | None = None, opset: int = 17,
         order: list[str] | None = None, **attrs):
    return pytest.param(op, inputs, inits or {}, opset, order, attrs, id=case_id)


def assert_matches(model, feeds) -> None:
    """Values match onnxruntime, and so does the output dtype."""
    assert_matches_ort(model, feeds)
    for a, e in zip(run_proxy(model, feeds), run_ort(model, feeds), strict=True):
        assert a.dtype == e.dtype, f"dtype {a.dtype} != onnxruntime {e.dtype}"


X = rand(2, 3, 4)
POS = rand(2, 3, 4, low=0.1, high=3.0, seed=5)

BINARY = [
    case(f"{op}-{form}-opset{opset}", op, ins, inits, opset)
    for op in ("Add", "Sub", "Mul", "Div")
    for form, ins, inits in [
        ("same-shape", {"a": X, "b": rand(2, 3, 4, seed=1, low=0.5, high=2)}, None),
        ("bcast-last-axis", {"a": X, "b": rand(4, seed=2, low=0.5, high=2)}, None),
        ("bcast-both", {"a": rand(2, 1, 4), "b": rand(3, 1, seed=3, low=0.5, high=2)}, None),
        ("scalar-initializer", {"a": X}, {"b": np.array(1.5, np.float32)}),
        ("initializer", {"a": X}, {"b": rand(3, 4, seed=4, low=0.5, high=2)}),
    ]
    for opset in (7, 13, 17)
] + [
    case(f"{op}-int32", op, {"a": ints(3, 4), "b": nonzero_ints(3, 4)})
    for op in ("Add", "Sub", "Mul", "Div")
] + [
    case("Div-int64-truncates-bcast", "Div", {"a": ints(2, 3, 4, low=-50, high=50, dtype=np.int64),
                                               "b": nonzero_ints(4, dtype=np.int64)}),
    case("Div-uint8", "Div", {"a": ints(6, low=0, high=255, dtype=np.uint8),
                              "b": ints(6, low=1, high=9, dtype=np.uint8)}),
]

POW = [
    case("Pow-float-float", "Pow", {"a": POS, "b": rand(2, 3, 4, seed=6, low=-2, high=2)}),
    case("Pow-float-float-opset7", "Pow", {"a": POS, "b": rand(2, 3, 4, seed=6, low=-2, high=2)}, opset=7),
    case("Pow-negative-base-int-exponent", "Pow",
         {"a": X, "b": ints(2, 3, 4, low=-3, high=4, dtype=np.int64)}),
    case("Pow-float-int32-exponent-opset12", "Pow", {"a": X, "b": ints(4, low=0, high=4)}, opset=12),
    case("Pow-float-double-exponent-opset15", "Pow", {"a": POS}, {"b": np.array([0.5, 2, 3, -1], np.float64)},
         opset=15),
    case("Pow-scalar-exponent-2", "Pow", {"a": X}, {"b": np.array(2.0, np.float32)}),
    case("Pow-scalar-exponent-initializer-bcast", "Pow", {"a": POS}, {"b": rand(3, 1, seed=7)}),
    case("Pow-int32-int32", "Pow",
         {"a": ints(3, 4, low=-5, high=6), "b": ints(3, 4, low=-2, high=6, seed=2)}),
    case("Pow-int64-float-exponent", "Pow", {"a": ints(6, low=1, high=9, dtype=np.int64),
                                             "b": rand(6, seed=8, low=-1, high=3)}),
    case("Pow-int64-large-square", "Pow", {"a": np.array([3037000499, -123456789, 7], np.int64)},
         {"b": np.array(2, np.int64)}),
    case("Pow-int64-large-odd-power", "Pow", {"a": np.array([3, 3, 5], np.int64),
                                              "b": np.array([39, 38, 20], np.int64)}),
]

UNARY = [
    case("Sqrt", "Sqrt", {"x": POS}),
    case("Reciprocal", "Reciprocal", {"x": POS}),
    case("Neg", "Neg", {"x": X}),
    case("Neg-int32", "Neg", {"x": ints(3, 4)}),
    case("Abs", "Abs", {"x": X}),
    case("Abs-int8", "Abs", {"x": ints(3, 4, dtype=np.int8)}),
    case("Exp", "Exp", {"x": X}),
    case("Log", "Log", {"x": POS}),
    case("Erf", "Erf", {"x": rand(2, 3, 4, low=-3, high=3)}),
    case("Floor", "Floor", {"x": rand(2, 3, 4, low=-3, high=3)}),
    case("Ceil", "Ceil", {"x": rand(2, 3, 4, low=-3, high=3)}),
    case("Sin", "Sin", {"x": rand(2, 3, 4, low=-4, high=4)}),
    case("Cos", "Cos", {"x": rand(2, 3, 4, low=-4, high=4)}),
    *(case(op, op, {"x": rand(2, 3, 4, low=low, high=high)}) for op, low, high in (  # within each domain
        ("Tan", -1.2, 1.2), ("Asin", -0.99, 0.99), ("Acos", -0.99, 0.99), ("Atan", -5, 5), ("Sinh", -3, 3),
        ("Cosh", -3, 3), ("Asinh", -5, 5), ("Acosh", 1.01, 5), ("Atanh", -0.99, 0.99))),
    case("Round-half-to-even", "Round", {"x": np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 0.2],
                                                        np.float32)}),
    case("Sign", "Sign", {"x": np.array([-2.0, 0.0, 3.5, -0.1], np.float32)}),
    case("Sign-int8", "Sign", {"x": np.array([-2, 0, 3], np.int8)}),
    case("Sqrt-opset6", "Sqrt", {"x": POS}, opset=6),
    case("Erf-opset9", "Erf", {"x": X}, opset=9),
    case("Sin-opset22", "Sin", {"x": X}, opset=22),
]

VARIADIC = [
    case(f"{op}-{form}-opset{opset}", op, ins, None, opset)
    for op in ("Sum", "Mean", "Min", "Max")
    for form, ins, opset in [
        ("one-input", {"a": X}, 17),
        ("three-inputs-bcast", {"a": X, "b": rand(4, seed=1), "c": rand(3, 1, seed=2)}, 17),
        ("two-inputs-bcast-opset8", {"a": rand(3, 1), "b": rand(1, 4, seed=1)}, 8),
        ("equal-shapes-opset6", {"a": X, "b": rand(2, 3, 4, seed=1), "c": rand(2, 3, 4, seed=2)}, 6),
    ]
] + [
    case(f"{op}-int32-bcast-opset13", op, {"a": ints(3, 4), "b": ints(4, seed=3)}, opset=13)
    for op in ("Min", "Max")
] + [
    case("Max-int64-opset12", "Max", {"a": ints(3, 4, dtype=np.int64), "b": ints(1, seed=3, dtype=np.int64)},
         opset=12),
    case("Sum-initializer", "Sum", {"a": X}, {"b": rand(3, 4, seed=9)}),
]

MOD = [
    case("Mod-int32-fmod0", "Mod", {"a": ints(3, 4, low=-20, high=20), "b": nonzero_ints(3, 4)}, fmod=0),
    case("Mod-int32-fmod1", "Mod", {"a": ints(3, 4, low=-20, high=20), "b": nonzero_ints(3, 4)}, fmod=1),
    case("Mod-int64-default-bcast", "Mod", {"a": ints(2, 3, 4, low=-20, high=20, dtype=np.int64),
                                            "b": nonzero_ints(4, dtype=np.int64)}),
    case("Mod-uint8-fmod0", "Mod", {"a": ints(6, low=0, high=255, dtype=np.uint8),
                                    "b": ints(6, low=1, high=50, dtype=np.uint8)}, fmod=0),
    case("Mod-float-fmod1", "Mod",
         {"a": rand(3, 4, low=-10, high=10), "b": rand(3, 4, seed=2, low=1, high=3)}, fmod=1),
    case("Mod-float-fmod1-negative-divisor-opset10", "Mod", {"a": rand(3, 4, low=-10, high=10),
                                                             "b": rand(4, seed=2, low=-3, high=-1)},
         opset=10, fmod=1),
]


@pytest.mark.parametrize("op,inputs,inits,opset,order,attrs", BINARY + POW + UNARY + VARIADIC + MOD)
def test_matches_onnxruntime(op, inputs, inits, opset, order, attrs):
    model = one_node_model(op, inputs, initializers=inits, input_order=order, opset=opset, **attrs)
    assert_matches(model, inputs)


@pytest.mark.parametrize(
    "op,axis,a_shape,b_shape",
    [
        pytest.param("Add", 1, (2, 3, 4, 5), (3, 4), id="Add-axis1"),
        pytest.param("Mul", 0, (2, 3, 4), (2,), id="Mul-axis0"),
        pytest.param("Sub", None, (2, 3, 4), (3, 4), id="Sub-suffix"),
        pytest.param("Div", -2, (2, 3, 4), (3,), id="Div-negative-axis"),
    ],
)
def test_legacy_broadcast_opset6(op, axis, a_shape, b_shape):
    """Opset < 7 binary ops align B at `axis` (onnxruntime has no kernel for them, so check with numpy)."""
    a, b = rand(*a_shape), rand(*b_shape, seed=1, low=0.5, high=2)
    attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
    model = one_node_model(op, {"a": a, "b": b}, opset=6, **attrs)
    (actual,) = run_proxy(model, {"a": a, "b": b})
    start = len(a_shape) - len(b_shape) if axis is None else axis % len(a_shape)
    b_aligned = b.reshape(b.shape + (1,) * (len(a_shape) - start - len(b_shape)))
    expected = {"Add": np.add, "Mul": np.multiply, "Sub": np.subtract, "Div": np.divide}[op](a, b_aligned)
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_mod_float_fmod0_unsupported():
    model = one_node_model("Mod", {"a": rand(3), "b": rand(3, seed=1)}, fmod=0)
    with pytest.raises(UnsupportedOpError, match="fmod=0"):
        build_proxy(model)


@pytest.mark.parametrize("op", ["Pow", "Mul", "Div", "Sum"])
def test_gradients_reach_initializers(op):
    """A float initializer operand (Pow's exponent included) is a trainable parameter with a finite grad."""
    x = rand(2, 3, 4, low=0.5, high=2)
    model = one_node_model(op, {"x": x}, initializers={"w": rand(3, 4, seed=3, low=0.5, high=2)})
    proxy = build_proxy(model)
    assert proxy.parameter_key("w") is not None
    xt = torch.from_numpy(x).requires_grad_(True)
    proxy(xt).sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all()
    for name, param in proxy.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
