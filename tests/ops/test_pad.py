"""Pad against onnxruntime: attribute and input forms, all modes, axes, negative pads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# id -> (x shape, mode, pads, constant value or None, axes or None, opset)
CASES = {
    "constant_4d": ((2, 3, 4, 5), "constant", (0, 0, 1, 2, 0, 0, 2, 1), 1.5, None, 17),
    "constant_default_value": ((2, 3, 4), "constant", (0, 1, 2, 0, 1, 0), None, None, 17),
    "constant_batch_axis": ((2, 3, 4), "constant", (1, 0, 0, 2, 0, 0), -2.0, None, 17),
    "constant_negative_crop": ((2, 3, 6, 5), "constant", (0, 0, -1, 2, 0, 0, -2, -1), 0.0, None, 17),
    "reflect_2d": ((2, 3, 5, 6), "reflect", (0, 0, 2, 1, 0, 0, 1, 3), None, None, 17),
    "reflect_all_axes": ((3, 4, 5), "reflect", (1, 2, 1, 2, 1, 3), None, None, 17),
    "edge_2d": ((2, 3, 5, 6), "edge", (0, 0, 2, 1, 0, 0, 3, 0), None, None, 17),
    "edge_negative": ((2, 3, 5, 6), "edge", (0, 0, 2, -1, 0, 0, -2, 3), None, None, 17),
    "edge_1d_input": ((7,), "edge", (2, 3), None, None, 17),
    "constant_opset11": ((2, 3, 4), "constant", (0, 1, 1, 0, 1, 1), 3.0, None, 11),
    "reflect_opset13": ((2, 3, 4), "reflect", (0, 1, 1, 0, 2, 1), None, None, 13),
    "axes_opset18": ((2, 3, 4, 5), "constant", (1, 2, 0, 1), 0.5, (2, 3), 18),
    "negative_axes_opset18": ((2, 3, 4, 5), "edge", (2, 1, 1, 0), None, (-1, 1), 18),
    "wrap_opset19": ((2, 3, 4, 5), "wrap", (0, 0, 1, 2, 0, 0, 3, 1), None, None, 19),
    "wrap_axes_opset19": ((2, 3, 4, 5), "wrap", (2, 3), None, (-1,), 19),
    "wrap_negative_opset19": ((2, 3, 4, 5), "wrap", (0, 0, 2, -1, 0, 0, -1, 2), None, None, 19),
    "reflect_opset21": ((1, 2, 4, 4), "reflect", (0, 0, 3, 3, 0, 0, 3, 3), None, None, 21),
}


@pytest.mark.parametrize("runtime", [False, True], ids=["const_pads", "runtime_pads"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_pad(case, runtime):
    shape, mode, pads, value, axes, opset = CASES[case]
    x = rand(*shape)
    tensors = {"pads": _i64(*pads)}
    order = ["x", "pads"]
    if value is not None:
        tensors["value"] = np.array(value, dtype=np.float32)
        order.append("value")
    if axes is not None:
        tensors["axes"] = _i64(*axes)
        order += ([] if value is not None else [""]) + ["axes"]
    inputs = {"x": x, **(tensors if runtime else {})}
    model = one_node_model("Pad", inputs, initializers=None if runtime else tensors, input_order=order,
                           opset=opset, mode=mode)
    assert_matches_ort(model, inputs)


ATTR_CASES = {
    "constant": ((2, 3, 4, 5), "constant", (0, 0, 1, 2, 0, 0, 2, 1), 2.5),
    "reflect": ((2, 3, 4, 5), "reflect", (0, 0, 1, 2, 0, 0, 2, 1), 0.0),
    "edge": ((2, 3, 4, 5), "edge", (0, 0, 1, 2, 0, 0, 2, 1), 0.0),
    "constant_negative": ((2, 3, 4, 5), "constant", (0, 0, -1, 2, 0, 0, 2, -1), 0.0),
}


@pytest.mark.parametrize("case", ATTR_CASES, ids=list(ATTR_CASES))
def test_pad_attribute_form_opset2(case):
    shape, mode, pads, value = ATTR_CASES[case]
    x = rand(*shape)
    model = one_node_model("Pad", {"x": x}, opset=2, mode=mode, pads=list(pads), value=value)
    model.ir_version = 7
    assert_matches_ort(model, {"x": x})


def test_pad_int64_constant():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    inits = {"pads": _i64(1, 0, 0, 2), "v": np.array(7, np.int64)}
    model = one_node_model("Pad", {"x": x}, initializers=inits, mode="constant")
    assert_matches_ort(model, {"x": x})


def test_pad_gradient_flows_through_reflect():
    inits = {"pads": _i64(0, 0, 1, 1, 0, 0, 2, 2)}
    model = one_node_model("Pad", {"x": rand(1, 2, 4, 4)}, initializers=inits, mode="reflect")
    x = torch.from_numpy(rand(1, 2, 4, 4)).requires_grad_()
    build_proxy(model)(x).sum().backward()
    assert x.grad is not None and float(x.grad.sum()) == 2 * 7 * 7
