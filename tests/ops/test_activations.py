"""Activation converters against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand, run_ort, run_proxy


def case(case_id: str, op: str, inputs: dict, inits: dict | None = None, opset: int = 17,
         order: list[str] | None = None, **attrs):
    return pytest.param(op, inputs, inits or {}, opset, order, attrs, id=case_id)


def assert_matches(model, feeds) -> None:
    """Values match onnxruntime, and so does the output dtype."""
    assert_matches_ort(model, feeds)
    for a, e in zip(run_proxy(model, feeds), run_ort(model, feeds), strict=True):
        assert a.dtype == e.dtype, f"dtype {a.dtype} != onnxruntime {e.dtype}"


X = rand(2, 3, 4, 5, low=-3, high=3)
I32 = np.random.default_rng(0).integers(-9, 10, size=(3, 4)).astype(np.int32)
f32 = np.float32

SIMPLE = [
    case("Relu", "Relu", {"x": X}),
    case("Relu-opset6", "Relu", {"x": X}, opset=6),
    case("Relu-int32-opset14", "Relu", {"x": I32}, opset=14),
    case("Relu-int8-opset14", "Relu", {"x": I32.astype(np.int8)}, opset=14),
    case("LeakyRelu-default", "LeakyRelu", {"x": X}),
    case("LeakyRelu-alpha0.3", "LeakyRelu", {"x": X}, alpha=0.3),
    case("LeakyRelu-alpha0.1-opset6", "LeakyRelu", {"x": X}, opset=6, alpha=0.1),
    case("Elu-default", "Elu", {"x": X}),
    case("Elu-alpha0.5", "Elu", {"x": X}, alpha=0.5),
    case("Selu-default", "Selu", {"x": X}),
    case("Selu-alpha-gamma", "Selu", {"x": X}, alpha=1.2, gamma=0.8),
    case("Celu-default-opset12", "Celu", {"x": X}, opset=12),
    case("Celu-alpha2", "Celu", {"x": X}, alpha=2.0),
    case("ThresholdedRelu-default", "ThresholdedRelu", {"x": X}),
    case("ThresholdedRelu-alpha0.5-opset10", "ThresholdedRelu", {"x": X}, opset=10, alpha=0.5),
    case("ThresholdedRelu-alpha-negative", "ThresholdedRelu", {"x": X}, alpha=-0.5),
    case("Sigmoid", "Sigmoid", {"x": X}),
    case("HardSigmoid-default", "HardSigmoid", {"x": X}),
    case("HardSigmoid-alpha-beta", "HardSigmoid", {"x": X}, alpha=0.4, beta=0.3),
    case("HardSwish-opset14", "HardSwish", {"x": X}, opset=14),
    case("Tanh", "Tanh", {"x": X}),
    case("Softplus", "Softplus", {"x": rand(2, 3, 4, low=-30, high=30)}),
    case("Softsign", "Softsign", {"x": X}),
    case("Gelu-none-opset20", "Gelu", {"x": X}, opset=20),
    case("Gelu-tanh-opset20", "Gelu", {"x": X}, opset=20, approximate="tanh"),
    case("Mish-opset18", "Mish", {"x": X}, opset=18),
    case("Softplus-opset22", "Softplus", {"x": X}, opset=22),
]

PRELU = [
    case("PRelu-slope-C11", "PRelu", {"x": X}, {"slope": rand(3, 1, 1, seed=1)}),
    case("PRelu-slope-last-axis", "PRelu", {"x": X}, {"slope": rand(5, seed=1)}),
    case("PRelu-slope-scalar", "PRelu", {"x": X}, {"slope": np.array([0.25], f32)}),
    case("PRelu-slope-full", "PRelu", {"x": X}, {"slope": rand(2, 3, 4, 5, seed=1)}),
    case("PRelu-slope-graph-input", "PRelu", {"x": X, "slope": rand(4, 1, seed=1)}),
    case("PRelu-opset7", "PRelu", {"x": X}, {"slope": rand(3, 1, 1, seed=1)}, opset=7),
    case("PRelu-int32-opset16", "PRelu", {"x": I32, "slope": np.array([2, 3, -1, 0], np.int32)}, opset=16),
]


def scalar(v, dtype=f32):
    return np.array(v, dtype)


CLIP = [
    case("Clip-attr-min-max-opset6", "Clip", {"x": X}, opset=6, min=-1.0, max=0.5),
    case("Clip-attr-min-only-opset6", "Clip", {"x": X}, opset=6, min=-1.0),
    case("Clip-attr-max-only-opset6", "Clip", {"x": X}, opset=6, max=0.5),
    case("Clip-attr-none-opset6", "Clip", {"x": X}, opset=6),
    case("Clip-init-min-max-opset11", "Clip", {"x": X}, {"lo": scalar(-1), "hi": scalar(0.5)}, opset=11),
    case("Clip-init-min-max", "Clip", {"x": X}, {"lo": scalar(-1), "hi": scalar(0.5)}),
    case("Clip-min-only", "Clip", {"x": X}, {"lo": scalar(-1)}),
    case("Clip-max-only-omitted-min", "Clip", {"x": X}, {"hi": scalar(0.5)}, order=["x", "", "hi"]),
    case("Clip-no-bounds", "Clip", {"x": X}),
    case("Clip-runtime-min-max", "Clip", {"x": X, "lo": scalar(-0.7), "hi": scalar(1.2)}),
    case("Clip-runtime-max-omitted-min", "Clip", {"x": X, "hi": scalar(1.2)}, order=["x", "", "hi"]),
    case("Clip-min-greater-than-max", "Clip", {"x": X}, {"lo": scalar(1), "hi": scalar(-1)}),
    case("Clip-int32-opset12", "Clip", {"x": I32}, {"lo": scalar(-3, np.int32), "hi": scalar(4, np.int32)},
         opset=12),
    case("Clip-int64-runtime", "Clip", {"x": I32.astype(np.int64), "lo": scalar(-2, np.int64)}, opset=13),
]

SOFTMAX = [
    case(f"{op}-{name}-opset{opset}", op, {"x": X}, None, opset, **attrs)
    for op in ("Softmax", "LogSoftmax")
    for opset, name, attrs in [
        (1, "default-axis", {}),
        (11, "default-axis-coerce2d", {}),
        (11, "axis0-coerce2d", {"axis": 0}),
        (11, "axis2-coerce2d", {"axis": 2}),
        (11, "axis-neg1", {"axis": -1}),
        (11, "axis-neg3-coerce2d", {"axis": -3}),
        (13, "default-axis", {}),
        (13, "axis1", {"axis": 1}),
        (13, "axis0", {"axis": 0}),
        (17, "axis-neg2", {"axis": -2}),
    ]
]


@pytest.mark.parametrize("op,inputs,inits,opset,order,attrs", SIMPLE + PRELU + CLIP + SOFTMAX)
def test_matches_onnxruntime(op, inputs, inits, opset, order, attrs):
    model = one_node_model(op, inputs, initializers=inits, input_order=order, opset=opset, **attrs)
    assert_matches(model, inputs)


def test_gelu_unknown_approximation_is_unsupported():
    model = one_node_model("Gelu", {"x": X}, opset=20, approximate="erf")
    with pytest.raises(UnsupportedOpError, match="approximate"):
        build_proxy(model)


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (5,), (2, 3, 4, 5)], ids=["C11", "last-axis", "full"])
def test_prelu_slope_initializer_gradient(slope_shape):
    model = one_node_model("PRelu", {"x": X}, initializers={"slope": rand(*slope_shape, seed=2)})
    proxy = build_proxy(model)
    key = proxy.parameter_key("slope")
    assert key is not None, "the slope initializer should be a trainable parameter"
    xt = torch.from_numpy(X).requires_grad_(True)
    proxy(xt).sum().backward()
    grad = proxy.weights[key].grad
    assert grad is not None and grad.shape == slope_shape and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    # d(sum)/d(slope) = sum of the negative inputs that slope element touches
    expected = np.minimum(X, 0)
    axes = tuple(i for i in range(X.ndim) if i < X.ndim - len(slope_shape)
                 or slope_shape[i - (X.ndim - len(slope_shape))] == 1)
    expected = expected.sum(axis=axes).reshape(slope_shape)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_clip_bounds_stay_buffers_and_x_gets_gradient():
    model = one_node_model("Clip", {"x": X}, initializers={"lo": scalar(-1), "hi": scalar(0.5)})
    proxy = build_proxy(model)
    assert proxy.parameter_key("lo") is None and proxy.parameter_key("hi") is None
    xt = torch.from_numpy(X).requires_grad_(True)
    proxy(xt).sum().backward()
    expected = ((X >= -1) & (X <= 0.5)).astype(f32)
    np.testing.assert_array_equal(xt.grad.numpy(), expected)
