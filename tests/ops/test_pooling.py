"""MaxPool, AveragePool, LpPool and the global pools against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand

# id -> (x shape, attributes, opset)
MAX_CASES = {
    "1d": ((2, 3, 9), {"kernel_shape": [3]}, 17),
    "1d_strides_pads": ((2, 3, 9), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}, 17),
    "2d": ((2, 3, 8, 7), {"kernel_shape": [2, 2]}, 17),
    "2d_strides": ((2, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2]}, 17),
    "2d_pads": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 17),
    "2d_asymmetric_pads": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 2],
                                         "pads": [0, 1, 2, 0]}, 17),
    "2d_large_pads": ((1, 2, 6, 6), {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}, 17),
    "2d_dilations": ((1, 3, 9, 8), {"kernel_shape": [2, 3], "dilations": [2, 2]}, 17),
    "2d_ceil_mode": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 17),
    "2d_ceil_mode_pads": ((1, 3, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                         "ceil_mode": 1}, 17),
    "2d_ceil_mode_last_window_dropped": ((1, 1, 5, 5), {"kernel_shape": [2, 2], "strides": [2, 2],
                                                        "pads": [1, 1, 1, 1], "ceil_mode": 1}, 17),
    "2d_valid": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 17),
    "2d_same_upper": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 2],
                                    "auto_pad": "SAME_UPPER"}, 17),
    "2d_same_lower": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 2],
                                    "auto_pad": "SAME_LOWER"}, 17),
    "3d": ((1, 2, 5, 6, 4), {"kernel_shape": [2, 2, 2], "strides": [1, 2, 2],
                            "pads": [1, 0, 0, 1, 1, 0]}, 17),
    "opset11": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 11),
    "opset8_storage_order": ((1, 3, 6, 6), {"kernel_shape": [2, 2], "storage_order": 0}, 8),
}


@pytest.mark.parametrize("case", MAX_CASES, ids=list(MAX_CASES))
def test_max_pool(case):
    shape, attrs, opset = MAX_CASES[case]
    model = one_node_model("MaxPool", {"x": rand(*shape)}, opset=opset, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


def test_max_pool_int8():
    x = np.random.default_rng(0).integers(-128, 127, size=(1, 2, 6, 6)).astype(np.int8)
    model = one_node_model("MaxPool", {"x": x}, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0])
    assert_matches_ort(model, {"x": x})


def test_pool_same_with_large_stride_is_unsupported():
    model = one_node_model("AveragePool", {"x": rand(1, 1, 9, 9)}, kernel_shape=[1, 1], strides=[3, 3],
                           auto_pad="SAME_UPPER")
    with pytest.raises(UnsupportedOpError, match="strides"):
        build_proxy(model)


# id -> (x shape, attributes, opset)
AVG_CASES = {
    "1d": ((2, 3, 9), {"kernel_shape": [3]}, 17),
    "2d": ((2, 3, 8, 7), {"kernel_shape": [2, 2], "strides": [2, 2]}, 17),
    "2d_pads_exclude_pad": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 17),
    "2d_pads_include_pad": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                           "count_include_pad": 1}, 17),
    "2d_asymmetric_pads": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0]}, 17),
    "2d_asymmetric_pads_include_pad": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0],
                                                      "count_include_pad": 1}, 17),
    "2d_ceil_mode": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 17),
    "2d_ceil_mode_pads_exclude_pad": ((1, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                     "pads": [1, 1, 1, 1], "ceil_mode": 1}, 17),
    "2d_ceil_mode_pads_include_pad": ((1, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                     "pads": [1, 1, 1, 1], "ceil_mode": 1,
                                                     "count_include_pad": 1}, 17),
    "2d_ceil_mode_asymmetric_include_pad": ((1, 2, 8, 8), {"kernel_shape": [3, 3], "strides": [3, 3],
                                                           "pads": [0, 2, 1, 0], "ceil_mode": 1,
                                                           "count_include_pad": 1}, 17),
    "2d_valid": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}, 17),
    "2d_same_upper": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 2],
                                    "auto_pad": "SAME_UPPER"}, 17),
    "2d_same_lower_include_pad": ((1, 3, 8, 7), {"kernel_shape": [3, 2], "strides": [2, 2],
                                                 "auto_pad": "SAME_LOWER", "count_include_pad": 1}, 17),
    "2d_same_lower_stride_kernel_plus_1": ((1, 2, 7, 8), {"kernel_shape": [1, 2], "strides": [2, 3],
                                                          "auto_pad": "SAME_LOWER"}, 17),
    "2d_dilations_opset19": ((1, 2, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 2],
                                           "pads": [1, 1, 1, 1]}, 19),
    "2d_dilations_ceil_include_pad_opset19": ((1, 2, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 1],
                                                             "strides": [2, 2], "pads": [1, 0, 1, 1],
                                                             "ceil_mode": 1, "count_include_pad": 1}, 19),
    "3d": ((1, 2, 5, 6, 4), {"kernel_shape": [2, 2, 2], "strides": [1, 2, 2],
                            "pads": [1, 0, 0, 1, 1, 0]}, 17),
    "opset11": ((1, 3, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 11),
}


@pytest.mark.parametrize("case", AVG_CASES, ids=list(AVG_CASES))
def test_average_pool(case):
    shape, attrs, opset = AVG_CASES[case]
    model = one_node_model("AveragePool", {"x": rand(*shape)}, opset=opset, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


def test_pool_other_input_size_at_run_time():
    model = one_node_model("AveragePool", {"x": rand(1, 3, 8, 8)}, kernel_shape=[3, 3], strides=[2, 2],
                           auto_pad="SAME_UPPER")
    y = build_proxy(model)(torch.from_numpy(rand(2, 3, 11, 5)))
    assert tuple(y.shape) == (2, 3, 6, 3)


LP_CASES = {
    "p2_2d": ((1, 3, 8, 7), {"kernel_shape": [3, 3]}, 17),
    "p1_pads_strides": ((1, 3, 8, 7), {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 0, 1, 1],
                                      "p": 1}, 17),
    "p3_1d": ((2, 3, 9), {"kernel_shape": [3], "p": 3}, 17),
    "opset18_ceil_dilations": ((1, 2, 9, 8), {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [1, 2],
                                              "ceil_mode": 1}, 18),
}


@pytest.mark.parametrize("case", LP_CASES, ids=list(LP_CASES))
def test_lp_pool(case):
    shape, attrs, opset = LP_CASES[case]
    model = one_node_model("LpPool", {"x": rand(*shape)}, opset=opset, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


GLOBAL_CASES = {
    "avg_3d": ("GlobalAveragePool", (2, 3, 7), {}),
    "avg_4d": ("GlobalAveragePool", (2, 3, 5, 4), {}),
    "avg_5d": ("GlobalAveragePool", (1, 3, 2, 5, 4), {}),
    "max_4d": ("GlobalMaxPool", (2, 3, 5, 4), {}),
    "max_3d": ("GlobalMaxPool", (2, 3, 7), {}),
    "lp_4d": ("GlobalLpPool", (2, 3, 5, 4), {}),
    "lp_p1": ("GlobalLpPool", (2, 3, 5, 4), {"p": 1}),
}


@pytest.mark.parametrize("case", GLOBAL_CASES, ids=list(GLOBAL_CASES))
def test_global_pool(case):
    op, shape, attrs = GLOBAL_CASES[case]
    model = one_node_model(op, {"x": rand(*shape)}, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


def test_global_lp_pool_opset22():
    """GlobalLpPool-22 (bfloat16 added; onnxruntime has no kernel for it): the norm over the spatial axes."""
    x = rand(2, 3, 5, 4)
    y = build_proxy(one_node_model("GlobalLpPool", {"x": x}, opset=22, p=3))(torch.from_numpy(x)).numpy()
    expected = (np.abs(x.astype(np.float64)) ** 3).sum(axis=(2, 3), keepdims=True) ** (1 / 3)
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_pool_gradients_flow_to_input():
    model = one_node_model("AveragePool", {"x": rand(1, 2, 6, 6)}, kernel_shape=[3, 3], pads=[0, 1, 1, 0],
                           ceil_mode=1, strides=[2, 2])
    x = torch.from_numpy(rand(1, 2, 6, 6)).requires_grad_()
    build_proxy(model)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# id -> (x shape, attributes); MaxPool with its Indices output (flat over N, C and the unpadded spatial axes)
INDICES_CASES = {
    "2d": ((2, 3, 6, 7), {"kernel_shape": [2, 2]}),
    "2d_pads_strides": ((1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "2d_asymmetric_pads_ceil": ((1, 2, 6, 5), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [0, 1, 1, 0],
                                               "ceil_mode": 1}),
    "2d_dilations": ((1, 2, 8, 8), {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    "2d_storage_order_1": ((2, 2, 5, 6), {"kernel_shape": [2, 3], "strides": [1, 2], "storage_order": 1}),
    "1d": ((2, 3, 9), {"kernel_shape": [3], "strides": [2]}),
    "3d": ((1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 2], "pads": [1, 0, 0, 1, 1, 0]}),
}


@pytest.mark.parametrize("case", INDICES_CASES, ids=list(INDICES_CASES))
def test_max_pool_indices(case):
    shape, attrs = INDICES_CASES[case]
    model = one_node_model("MaxPool", {"x": rand(*shape)}, outputs=("y", "i"), **attrs)
    assert_matches_ort(model, {"x": rand(*shape, seed=3)})
