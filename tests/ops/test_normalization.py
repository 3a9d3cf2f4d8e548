"""Normalization ops against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand


def _bn_inits(c: int) -> dict[str, np.ndarray]:
    return {"scale": rand(c, seed=1), "bias": rand(c, seed=2), "mean": rand(c, seed=3),
            "var": rand(c, seed=4, low=0.5, high=2.0)}


BN_CASES = {
    "opset7_4d": ((2, 3, 5, 4), 7, {}),
    "opset9_2d": ((4, 3), 9, {}),
    "opset9_3d": ((2, 3, 6), 9, {"epsilon": 1e-3}),
    "opset14_4d": ((2, 3, 5, 4), 14, {"momentum": 0.8}),
    "opset15_5d": ((1, 3, 3, 4, 2), 15, {}),
    "opset15_training_mode_0": ((2, 3, 4, 4), 15, {"training_mode": 0}),
}


@pytest.mark.parametrize("case", BN_CASES, ids=list(BN_CASES))
def test_batch_norm(case):
    shape, opset, attrs = BN_CASES[case]
    model = one_node_model("BatchNormalization", {"x": rand(*shape)}, initializers=_bn_inits(shape[1]),
                           opset=opset, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


def test_batch_norm_runtime_statistics():
    feeds = {"x": rand(2, 3, 4, 4), **_bn_inits(3)}
    model = one_node_model("BatchNormalization", feeds, opset=15)
    assert_matches_ort(model, feeds)


# id -> (x shape, outputs, attributes); training_mode=1 at opset 15: batch statistics, updated running ones
BN_TRAINING_CASES = {
    "three_outputs": ((2, 3, 4, 4), ("y", "m", "v"), {}),
    "momentum_epsilon": ((4, 3, 5), ("y", "m", "v"), {"momentum": 0.7, "epsilon": 1e-2}),
}


@pytest.mark.parametrize("case", BN_TRAINING_CASES, ids=list(BN_TRAINING_CASES))
def test_batch_norm_training_mode(case):
    shape, outputs, attrs = BN_TRAINING_CASES[case]
    model = one_node_model("BatchNormalization", {"x": rand(*shape)}, initializers=_bn_inits(shape[1]),
                           outputs=outputs, opset=15, training_mode=1, **attrs)
    assert_matches_ort(model, {"x": rand(*shape, seed=5)})


@pytest.mark.parametrize("variant", ["is_test_0", "extra_outputs"])
def test_batch_norm_old_training_is_unsupported(variant):
    kwargs = ({"is_test": 0, "opset": 6} if variant == "is_test_0" else {"outputs": ("y", "m", "v"), "opset": 9})
    model = one_node_model("BatchNormalization", {"x": rand(2, 3, 4, 4)}, initializers=_bn_inits(3), **kwargs)
    with pytest.raises(UnsupportedOpError, match="training|outputs"):
        build_proxy(model)


def test_batch_norm_gradients():
    model = one_node_model("BatchNormalization", {"x": rand(2, 3, 4, 4)}, initializers=_bn_inits(3))
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(2, 3, 4, 4))).square().sum().backward()
    for name in ("scale", "bias"):
        grad = proxy.tensor(name).grad
        assert grad is not None and torch.isfinite(grad).all()


INSTANCE_CASES = {"3d": ((2, 3, 7), 17), "4d": ((2, 3, 5, 4), 17), "5d_opset11": ((1, 2, 3, 4, 5), 11)}


@pytest.mark.parametrize("case", INSTANCE_CASES, ids=list(INSTANCE_CASES))
def test_instance_norm(case):
    shape, opset = INSTANCE_CASES[case]
    model = one_node_model("InstanceNormalization", {"x": rand(*shape)},
                           initializers={"scale": rand(shape[1], seed=1), "bias": rand(shape[1], seed=2)},
                           opset=opset, epsilon=1e-4)
    assert_matches_ort(model, {"x": rand(*shape)})


# id -> (x shape, axis or None, with bias, epsilon, number of outputs)
LAYER_CASES = {
    "last_axis": ((2, 5, 8), None, True, None, 1),
    "axis_1": ((2, 5, 8), 1, True, None, 1),
    "axis_minus_2": ((2, 3, 4, 6), -2, True, 1e-3, 1),
    "no_bias": ((2, 5, 8), -1, False, None, 1),
    "mean_invstd_outputs": ((2, 5, 8), -1, True, None, 3),
    "mean_output": ((3, 4, 6), 1, True, None, 2),
}


@pytest.mark.parametrize("case", LAYER_CASES, ids=list(LAYER_CASES))
def test_layer_norm(case):
    shape, axis, with_bias, eps, n_out = LAYER_CASES[case]
    norm_shape = shape[(axis if axis is not None else -1):]
    inits = {"scale": rand(*norm_shape, seed=1)}
    if with_bias:
        inits["bias"] = rand(*norm_shape, seed=2)
    attrs = {k: v for k, v in (("axis", axis), ("epsilon", eps)) if v is not None}
    outputs = ("y", "mean", "inv_std")[:n_out]
    model = one_node_model("LayerNormalization", {"x": rand(*shape)}, initializers=inits, outputs=outputs,
                           opset=17, **attrs)
    assert_matches_ort(model, {"x": rand(*shape)})


def test_layer_norm_gradients():
    model = one_node_model("LayerNormalization", {"x": rand(2, 5, 8)},
                           initializers={"scale": rand(8, seed=1), "bias": rand(8, seed=2)})
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(2, 5, 8))).square().sum().backward()
    for name in ("scale", "bias"):
        grad = proxy.tensor(name).grad
        assert grad is not None and torch.isfinite(grad).all()


# id -> (x shape, num_groups, opset)
GROUP_CASES = {
    "opset18_per_group": ((2, 6, 4, 4), 3, 18),
    "opset18_one_group": ((2, 4, 5), 1, 18),
    "opset21_per_channel": ((2, 6, 4, 4), 3, 21),
    "opset21_groups_equal_channels": ((2, 4, 3, 3), 4, 21),
}


@pytest.mark.parametrize("case", GROUP_CASES, ids=list(GROUP_CASES))
def test_group_norm(case):
    shape, groups, opset = GROUP_CASES[case]
    size = groups if opset == 18 else shape[1]
    model = one_node_model("GroupNormalization", {"x": rand(*shape)},
                           initializers={"scale": rand(size, seed=1), "bias": rand(size, seed=2)},
                           opset=opset, num_groups=groups, epsilon=1e-4)
    # Shape inference does not type the output of this function op; onnxruntime needs the type.
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    assert_matches_ort(model, {"x": rand(*shape)})


LP_CASES = {"p2_last": (2, None), "p1_axis1": (1, 1), "p2_axis0": (2, 0)}


@pytest.mark.parametrize("case", LP_CASES, ids=list(LP_CASES))
def test_lp_norm(case):
    p, axis = LP_CASES[case]
    attrs = {"p": p} | ({"axis": axis} if axis is not None else {})
    model = one_node_model("LpNormalization", {"x": rand(3, 4, 5)}, **attrs)
    assert_matches_ort(model, {"x": rand(3, 4, 5)})


LRN_CASES = {"size3": (3, {}), "size5_attrs": (5, {"alpha": 1e-2, "beta": 0.5, "bias": 2.0}),
             "size1": (1, {"alpha": 0.1})}


@pytest.mark.parametrize("case", LRN_CASES, ids=list(LRN_CASES))
def test_lrn(case):
    size, attrs = LRN_CASES[case]
    x = rand(2, 7, 4, 3, low=-3, high=3)
    model = one_node_model("LRN", {"x": x}, size=size, **attrs)
    assert_matches_ort(model, {"x": x})


def test_lrn_even_size_is_unsupported():
    model = one_node_model("LRN", {"x": rand(1, 4, 2, 2)}, size=4)
    with pytest.raises(UnsupportedOpError, match="size"):
        build_proxy(model)
