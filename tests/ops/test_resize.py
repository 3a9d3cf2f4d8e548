"""Resize and Upsample against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand

X = rand(2, 3, 5, 6)
EMPTY = np.array([], dtype=np.float32)


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _resize(x, *, scales=None, sizes=None, roi=None, opset=13, runtime=False, **attrs):
    """A Resize model in the opset-11+ input layout (X, roi, scales[, sizes])."""
    tensors = {"roi": _f32(*roi) if roi is not None else EMPTY,
               "scales": _f32(*scales) if scales is not None else EMPTY}
    if sizes is not None:
        tensors["sizes"] = _i64(*sizes)
    runtime_names = [n for n in ("scales", "sizes") if runtime and n in tensors and tensors[n].size]
    inputs = {"x": x, **{n: tensors[n] for n in runtime_names}}
    inits = {n: v for n, v in tensors.items() if n not in runtime_names}
    order = ["x", "roi", "scales"] + (["sizes"] if sizes is not None else [])
    model = one_node_model("Resize", inputs, initializers=inits, input_order=order, opset=opset, **attrs)
    return model, inputs


UP, DOWN, MIXED = (1, 1, 2, 3), (1, 1, 0.5, 0.5), (1, 1, 1.5, 0.7)
SIZES_UP, SIZES_DOWN, SIZES_MIXED, SIZES_3X3 = (2, 3, 10, 13), (2, 3, 3, 4), (2, 3, 1, 9), (2, 3, 3, 3)

# id -> (mode, coordinate_transformation_mode, nearest_mode, scales, sizes, opset)
CASES = {
    "nearest_half_pixel_up": ("nearest", "half_pixel", "round_prefer_floor", UP, None, 13),
    "nearest_half_pixel_down": ("nearest", "half_pixel", "round_prefer_floor", DOWN, None, 13),
    "nearest_round_prefer_ceil_down": ("nearest", "half_pixel", "round_prefer_ceil", DOWN, None, 13),
    "nearest_floor_mixed": ("nearest", "half_pixel", "floor", MIXED, None, 13),
    "nearest_ceil_mixed": ("nearest", "half_pixel", "ceil", MIXED, None, 13),
    "nearest_asymmetric_floor_up": ("nearest", "asymmetric", "floor", UP, None, 13),
    "nearest_asymmetric_sizes": ("nearest", "asymmetric", "round_prefer_floor", None, SIZES_UP, 13),
    "nearest_align_corners_sizes": ("nearest", "align_corners", "round_prefer_floor", None, SIZES_MIXED, 13),
    "nearest_pytorch_half_pixel_sizes": ("nearest", "pytorch_half_pixel", "floor", None, SIZES_MIXED, 13),
    "nearest_tf_half_pixel_for_nn": ("nearest", "tf_half_pixel_for_nn", "round_prefer_ceil", MIXED, None, 11),
    "nearest_half_pixel_symmetric_sizes": ("nearest", "half_pixel_symmetric", "floor", None, SIZES_3X3, 19),
    "nearest_opset11": ("nearest", "asymmetric", "floor", UP, None, 11),
    "nearest_opset18": ("nearest", "half_pixel", "round_prefer_floor", MIXED, None, 18),
    "linear_half_pixel_up": ("linear", "half_pixel", None, UP, None, 13),
    "linear_half_pixel_down": ("linear", "half_pixel", None, DOWN, None, 13),
    "linear_asymmetric_mixed": ("linear", "asymmetric", None, MIXED, None, 13),
    "linear_align_corners_sizes": ("linear", "align_corners", None, None, SIZES_UP, 13),
    "linear_align_corners_one_row": ("linear", "align_corners", None, None, SIZES_MIXED, 13),
    "linear_pytorch_half_pixel_sizes": ("linear", "pytorch_half_pixel", None, None, SIZES_MIXED, 13),
    "linear_half_pixel_symmetric": ("linear", "half_pixel_symmetric", None, MIXED, None, 19),
    "linear_sizes_down": ("linear", "half_pixel", None, None, SIZES_DOWN, 18),
    "cubic_half_pixel_up": ("cubic", "half_pixel", None, UP, None, 13),
    "cubic_half_pixel_down": ("cubic", "half_pixel", None, DOWN, None, 13),
    "cubic_align_corners_sizes": ("cubic", "align_corners", None, None, SIZES_UP, 13),
    "cubic_asymmetric_mixed": ("cubic", "asymmetric", None, MIXED, None, 13),
    "cubic_pytorch_half_pixel_opset19": ("cubic", "pytorch_half_pixel", None, MIXED, None, 19),
}


@pytest.mark.parametrize("runtime", [False, True], ids=["const", "runtime"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_resize(case, runtime):
    mode, coord, nearest, scales, sizes, opset = CASES[case]
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if nearest:
        attrs["nearest_mode"] = nearest
    model, feeds = _resize(X, scales=scales, sizes=sizes, opset=opset, runtime=runtime, **attrs)
    assert_matches_ort(model, feeds)


CUBIC_ATTR_CASES = {
    "exclude_outside": {"exclude_outside": 1},
    "coeff_a_-0.5": {"cubic_coeff_a": -0.5},
    "exclude_outside_coeff_a_-0.5": {"exclude_outside": 1, "cubic_coeff_a": -0.5},
}


@pytest.mark.parametrize("case", CUBIC_ATTR_CASES, ids=list(CUBIC_ATTR_CASES))
@pytest.mark.parametrize("scales", [UP, DOWN], ids=["up", "down"])
def test_resize_cubic_attributes(case, scales):
    model, feeds = _resize(X, scales=scales, mode="cubic", **CUBIC_ATTR_CASES[case])
    assert_matches_ort(model, feeds)


def test_resize_default_attributes():
    model, feeds = _resize(X, scales=UP)
    assert_matches_ort(model, feeds)


# id -> (x shape, mode, scales or None, sizes or None, axes)
AXES_CASES = {
    "nearest_scales_axes_2_3": ((2, 3, 5, 6), "nearest", (2.0, 1.5), None, (2, 3)),
    "linear_sizes_axes_neg": ((2, 3, 5, 6), "linear", None, (7, 9), (-2, -1)),
    "nearest_single_axis": ((2, 3, 5, 6), "nearest", (3.0,), None, (3,)),
}


@pytest.mark.parametrize("case", AXES_CASES, ids=list(AXES_CASES))
def test_resize_axes_opset18(case):
    shape, mode, scales, sizes, axes = AXES_CASES[case]
    model, feeds = _resize(rand(*shape), scales=scales, sizes=sizes, opset=18, mode=mode, axes=list(axes))
    assert_matches_ort(model, feeds)


# id -> (x shape, mode, scales)
RANK_CASES = {
    "linear_2d_input": ((5, 6), "linear", (2.0, 0.5)),
    "linear_3d_input": ((4, 5, 6), "linear", (1.0, 2.0, 1.5)),
    "trilinear_5d": ((1, 2, 3, 4, 5), "linear", (1.0, 1.0, 2.0, 1.5, 0.6)),
    "nearest_5d": ((1, 2, 3, 4, 5), "nearest", (1.0, 1.0, 2.0, 1.5, 0.6)),
    "nearest_3d_input": ((2, 3, 7), "nearest", (1.0, 1.0, 2.5)),
    "cubic_2d_input": ((5, 6), "cubic", (2.0, 1.5)),
    "linear_nhwc": ((1, 5, 6, 3), "linear", (1.0, 2.0, 1.5, 1.0)),
}


@pytest.mark.parametrize("case", RANK_CASES, ids=list(RANK_CASES))
def test_resize_ranks(case):
    shape, mode, scales = RANK_CASES[case]
    model, feeds = _resize(rand(*shape), scales=scales, mode=mode)
    assert_matches_ort(model, feeds)


# id -> (mode, scales)
OPSET10_CASES = {
    "nearest_up": ("nearest", UP),
    "nearest_down": ("nearest", DOWN),
    "nearest_mixed": ("nearest", MIXED),
    "linear_up": ("linear", UP),
    "linear_mixed": ("linear", MIXED),
}


@pytest.mark.parametrize("runtime", [False, True], ids=["const", "runtime"])
@pytest.mark.parametrize("case", OPSET10_CASES, ids=list(OPSET10_CASES))
def test_resize_opset10(case, runtime):
    mode, scales = OPSET10_CASES[case]
    tensors = {"scales": _f32(*scales)}
    inputs = {"x": X, **(tensors if runtime else {})}
    model = one_node_model("Resize", inputs, initializers=None if runtime else tensors,
                           input_order=["x", "scales"], opset=10, mode=mode)
    assert_matches_ort(model, inputs)


ANTIALIAS_DOWN, ANTIALIAS_SIZES = (1, 1, 0.6, 0.3), (2, 3, 3, 2)

# id -> (attributes, scales or None, sizes or None); all at opset 18 with antialias=1
ANTIALIAS_CASES = {
    "linear_scales": ({"mode": "linear"}, ANTIALIAS_DOWN, None),
    "linear_sizes": ({"mode": "linear"}, None, ANTIALIAS_SIZES),
    "linear_mixed_up_down": ({"mode": "linear"}, MIXED, None),
    "linear_align_corners": ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None,
                             ANTIALIAS_SIZES),
    "cubic_scales": ({"mode": "cubic"}, ANTIALIAS_DOWN, None),
    "cubic_sizes_exclude_outside": ({"mode": "cubic", "exclude_outside": 1}, None, ANTIALIAS_SIZES),
    "cubic_coeff_a": ({"mode": "cubic", "cubic_coeff_a": -0.5}, ANTIALIAS_DOWN, None),
}


@pytest.mark.parametrize("case", ANTIALIAS_CASES, ids=list(ANTIALIAS_CASES))
def test_resize_antialias(case):
    attrs, scales, sizes = ANTIALIAS_CASES[case]
    model, feeds = _resize(rand(2, 3, 11, 13), scales=scales, sizes=sizes, opset=18, antialias=1, **attrs)
    assert_matches_ort(model, feeds)


# id -> (mode, roi, sizes, extrapolation_value or None)
CROP_CASES = {
    "linear_inside": ("linear", (0, 0, 0.2, 0.3, 1, 1, 0.7, 0.9), (2, 3, 4, 5), None),
    "linear_extrapolated": ("linear", (0, 0, -0.3, 0.4, 1, 1, 0.8, 1.6), (2, 3, 6, 4), 10.0),
    "cubic_inside": ("cubic", (0, 0, 0.1, 0.2, 1, 1, 0.9, 0.8), (2, 3, 7, 3), None),
    "linear_single_row": ("linear", (0, 0, 0.2, 0.3, 1, 1, 0.6, 0.9), (2, 3, 1, 4), None),
}


@pytest.mark.parametrize("case", CROP_CASES, ids=list(CROP_CASES))
def test_resize_tf_crop_and_resize(case):
    mode, roi, sizes, extrapolation = CROP_CASES[case]
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize"}
    if extrapolation is not None:
        attrs["extrapolation_value"] = extrapolation
    model, feeds = _resize(X, sizes=sizes, roi=roi, opset=18, **attrs)
    assert_matches_ort(model, feeds)


def test_resize_tf_crop_and_resize_axes():
    model, feeds = _resize(X, sizes=(4, 4), roi=(0.1, -0.2, 0.8, 1.1), opset=18, axes=[2, 3], mode="linear",
                           coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=3.0)
    assert_matches_ort(model, feeds)


# id -> (keep_aspect_ratio_policy, sizes, axes or None)
ASPECT_CASES = {
    "not_larger_down": ("not_larger", (3, 5), [2, 3]),
    "not_smaller_down": ("not_smaller", (3, 5), [2, 3]),
    "not_larger_up_axes": ("not_larger", (9, 8), [2, 3]),
    "not_smaller_up_axes": ("not_smaller", (9, 8), [2, 3]),
}


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("case", ASPECT_CASES, ids=list(ASPECT_CASES))
def test_resize_keep_aspect_ratio_policy(case, mode):
    policy, sizes, axes = ASPECT_CASES[case]
    attrs = {"axes": axes} if axes else {}
    model, feeds = _resize(X, sizes=sizes, opset=18, mode=mode, keep_aspect_ratio_policy=policy, **attrs)
    assert_matches_ort(model, feeds)


def test_resize_tf_crop_and_resize_nearest_is_unsupported():
    """onnxruntime ignores the roi with mode='nearest', where the ONNX reference crops: refused."""
    model, _ = _resize(X, sizes=(2, 3, 5, 7), roi=(0, 0, 0.2, 0.1, 1, 1, 0.8, 0.9), opset=18, mode="nearest",
                       coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(UnsupportedOpError, match="roi"):
        build_proxy(model)


def test_resize_antialias_nearest_is_unsupported():
    model, _ = _resize(X, sizes=SIZES_DOWN, opset=18, antialias=1, mode="nearest")
    with pytest.raises(UnsupportedOpError, match="antialias"):
        build_proxy(model)


def test_resize_other_input_size_at_run_time():
    model, _ = _resize(X, scales=UP, mode="linear")
    y = build_proxy(model)(torch.from_numpy(rand(1, 3, 4, 4)))
    assert tuple(y.shape) == (1, 3, 8, 12)


def test_resize_gradient_flows_to_input():
    model, _ = _resize(X, scales=MIXED, mode="cubic")
    x = torch.from_numpy(X).requires_grad_()
    build_proxy(model)(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# id -> (mode, scales, opset)
UPSAMPLE_CASES = {
    "opset7_nearest": ("nearest", (1.0, 1.0, 2.0, 3.0), 7),
    "opset7_linear": ("linear", (1.0, 1.0, 2.0, 1.5), 7),
    "opset9_nearest": ("nearest", (1.0, 1.0, 2.0, 2.5), 9),
    "opset9_linear": ("linear", (1.0, 1.0, 3.0, 2.0), 9),
}


@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=list(UPSAMPLE_CASES))
def test_upsample(case):
    mode, scales, opset = UPSAMPLE_CASES[case]
    if opset == 7:
        model = one_node_model("Upsample", {"x": X}, opset=7, mode=mode, scales=list(scales))
    else:
        model = one_node_model("Upsample", {"x": X}, initializers={"scales": _f32(*scales)}, opset=opset,
                               mode=mode)
    model.ir_version = 7
    assert_matches_ort(model, {"x": X})


def test_resize_omitted_roi_and_scales_opset13():
    model = one_node_model("Resize", {"x": X}, initializers={"sizes": _i64(*SIZES_MIXED)},
                           input_order=["x", "", "", "sizes"], opset=13, mode="linear")
    assert_matches_ort(model, {"x": X})
