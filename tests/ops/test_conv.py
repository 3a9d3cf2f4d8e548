"""Conv and ConvTranspose against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand

# id -> (x shape, w shape, with bias, attributes)
CONV_CASES = {
    "1d": ((2, 3, 11), (4, 3, 3), True, {}),
    "1d_strides_pads": ((2, 3, 11), (4, 3, 3), True, {"strides": [2], "pads": [1, 1]}),
    "2d": ((2, 3, 9, 8), (5, 3, 3, 3), True, {}),
    "2d_no_bias": ((2, 3, 9, 8), (5, 3, 3, 3), False, {}),
    "2d_pads": ((1, 3, 9, 8), (5, 3, 3, 3), True, {"pads": [1, 1, 1, 1]}),
    "2d_asymmetric_pads": ((1, 3, 9, 8), (5, 3, 3, 2), True, {"pads": [0, 1, 2, 0]}),
    "2d_strides": ((1, 3, 10, 9), (4, 3, 3, 3), True, {"strides": [2, 3]}),
    "2d_dilations": ((1, 3, 10, 9), (4, 3, 3, 3), True, {"dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    "2d_group": ((1, 4, 7, 7), (6, 2, 3, 3), True, {"group": 2}),
    "2d_depthwise": ((2, 4, 7, 7), (4, 1, 3, 3), True, {"group": 4, "pads": [1, 1, 1, 1]}),
    "2d_depthwise_multiplier": ((1, 3, 7, 7), (6, 1, 3, 3), False, {"group": 3}),
    "2d_kernel_shape": ((1, 3, 7, 7), (4, 3, 3, 3), True, {"kernel_shape": [3, 3]}),
    "2d_valid": ((1, 3, 7, 8), (4, 3, 3, 3), True, {"auto_pad": "VALID", "strides": [2, 2]}),
    "2d_same_upper": ((1, 3, 7, 8), (4, 3, 4, 3), True, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "2d_same_lower": ((1, 3, 7, 8), (4, 3, 4, 3), True, {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    "2d_same_upper_1x1_stride2": ((1, 2, 6, 7), (3, 2, 1, 1), True,
                                  {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "2d_same_lower_stride_kernel_plus_1": ((1, 2, 8, 7), (3, 2, 2, 1), True,
                                           {"auto_pad": "SAME_LOWER", "strides": [3, 2]}),
    "2d_1x1": ((2, 8, 5, 5), (4, 8, 1, 1), True, {}),
    "3d": ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), True, {"pads": [1, 0, 1, 1, 0, 1]}),
    "3d_strides_group": ((1, 4, 6, 6, 6), (4, 2, 2, 2, 2), True, {"strides": [2, 1, 2], "group": 2}),
}


@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
def test_conv(case):
    x_shape, w_shape, with_bias, attrs = CONV_CASES[case]
    inits = {"w": rand(*w_shape, seed=1)}
    if with_bias:
        inits["b"] = rand(w_shape[0], seed=2)
    model = one_node_model("Conv", {"x": rand(*x_shape)}, initializers=inits, **attrs)
    assert_matches_ort(model, {"x": rand(*x_shape)})


def test_conv_same_with_dilations_is_unsupported():
    model = one_node_model("Conv", {"x": rand(1, 2, 9, 9)}, initializers={"w": rand(2, 2, 3, 3, seed=1)},
                           auto_pad="SAME_UPPER", dilations=[2, 2])
    with pytest.raises(UnsupportedOpError, match="dilations"):
        build_proxy(model)


def test_conv_same_with_large_stride_is_unsupported():
    model = one_node_model("Conv", {"x": rand(1, 2, 9, 9)}, initializers={"w": rand(2, 2, 1, 1, seed=1)},
                           auto_pad="SAME_UPPER", strides=[3, 3])
    with pytest.raises(UnsupportedOpError, match="strides"):
        build_proxy(model)


def test_conv_runtime_weights_opset11():
    x, w, b = rand(1, 3, 6, 6), rand(2, 3, 3, 3, seed=1), rand(2, seed=2)
    model = one_node_model("Conv", {"x": x, "w": w, "b": b}, opset=11, pads=[1, 1, 1, 1])
    assert_matches_ort(model, {"x": x, "w": w, "b": b})


def test_conv_other_batch_size_same_upper():
    """SAME_UPPER pads come from the run-time input size, not the shape seen at conversion."""
    model = one_node_model("Conv", {"x": rand(1, 3, 8, 8)}, initializers={"w": rand(2, 3, 3, 3, seed=1)},
                           auto_pad="SAME_UPPER", strides=[2, 2])
    proxy = build_proxy(model)
    y = proxy(torch.from_numpy(rand(3, 3, 9, 7)))
    assert tuple(y.shape) == (3, 2, 5, 4)


def test_conv_gradients_reach_weight_and_bias():
    model = one_node_model("Conv", {"x": rand(1, 3, 6, 6)},
                           initializers={"w": rand(2, 3, 3, 3, seed=1), "b": rand(2, seed=2)},
                           pads=[0, 1, 1, 0])
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(1, 3, 6, 6))).sum().backward()
    assert len(list(proxy.parameters())) == 2
    for p in proxy.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


# id -> (x shape, w shape, with bias, attributes)
CONV_T_CASES = {
    "1d": ((2, 3, 5), (3, 4, 3), True, {}),
    "1d_strides_pads": ((2, 3, 5), (3, 4, 3), True, {"strides": [2], "pads": [1, 1]}),
    "2d": ((1, 3, 4, 5), (3, 2, 3, 3), True, {}),
    "2d_no_bias": ((1, 3, 4, 5), (3, 2, 3, 3), False, {}),
    "2d_strides": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 3]}),
    "2d_pads": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "2d_asymmetric_pads": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "pads": [0, 1, 2, 0]}),
    "2d_output_padding": ((1, 3, 4, 5), (3, 2, 3, 3), True,
                          {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]}),
    "2d_output_padding_large": ((1, 3, 4, 5), (3, 2, 2, 2), True,
                                {"strides": [3, 3], "output_padding": [2, 1]}),
    "2d_dilations": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"dilations": [2, 1], "pads": [1, 0, 1, 0]}),
    "2d_group": ((1, 4, 4, 5), (4, 3, 3, 3), True, {"group": 2, "strides": [2, 2]}),
    "2d_depthwise": ((1, 4, 4, 5), (4, 1, 3, 3), True, {"group": 4}),
    "2d_output_shape": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "output_shape": [9, 10]}),
    "2d_output_shape_larger": ((1, 3, 4, 5), (3, 2, 3, 3), True,
                               {"strides": [2, 2], "output_shape": [10, 12]}),
    "2d_same_upper": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "2d_same_lower": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    "2d_same_upper_stride1": ((1, 3, 4, 5), (3, 2, 4, 4), True, {"auto_pad": "SAME_UPPER"}),
    "2d_valid": ((1, 3, 4, 5), (3, 2, 3, 3), True, {"strides": [2, 2], "auto_pad": "VALID"}),
}


@pytest.mark.parametrize("case", CONV_T_CASES, ids=list(CONV_T_CASES))
def test_conv_transpose(case):
    x_shape, w_shape, with_bias, attrs = CONV_T_CASES[case]
    inits = {"w": rand(*w_shape, seed=1)}
    if with_bias:
        group = attrs.get("group", 1)
        inits["b"] = rand(w_shape[1] * group, seed=2)
    model = one_node_model("ConvTranspose", {"x": rand(*x_shape)}, initializers=inits, **attrs)
    assert_matches_ort(model, {"x": rand(*x_shape)})


def test_conv_transpose_gradients():
    model = one_node_model("ConvTranspose", {"x": rand(1, 3, 4, 4)},
                           initializers={"w": rand(3, 2, 3, 3, seed=1), "b": rand(2, seed=2)},
                           strides=[2, 2], output_shape=[10, 10])
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(1, 3, 4, 4))).sum().backward()
    for p in proxy.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert np.isfinite(proxy(torch.from_numpy(rand(1, 3, 4, 4))).detach().numpy()).all()
