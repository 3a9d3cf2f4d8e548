"""The real-model benchmark times image models on smooth pictures (benchmarks/real_models.py)."""

import numpy as np
from onnx import TensorProto, helper

from benchmarks.real_models import benchmark_feeds, smooth_image


def test_smooth_image_repeats_cells_on_the_two_spatial_axes_of_nchw_and_nhwc():
    rng = np.random.default_rng(0)
    for shape, spatial in (((1, 3, 40, 50), (2, 3)), ((1, 40, 50, 3), (1, 2))):
        image = smooth_image(shape, rng, cell=16)
        assert image.shape == shape and np.abs(image).max() <= 1.0
        for axis in spatial:  # pixels 0-15 along a spatial axis are one cell, pixel 16 starts the next
            first = np.take(image, range(16), axis=axis)
            assert np.all(first == np.take(image, [0], axis=axis))
            assert not np.all(np.take(image, [16], axis=axis) == np.take(image, [0], axis=axis))


def _model(shape, elem=TensorProto.FLOAT):
    x = helper.make_tensor_value_info("x", elem, list(shape))
    y = helper.make_tensor_value_info("y", elem, None)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_image_feeds_replace_only_four_d_float_inputs():
    image = benchmark_feeds(_model((1, 3, 32, 32)), {}, "image")["x"]
    normal = benchmark_feeds(_model((1, 3, 32, 32)), {}, "normal")["x"]
    assert image.dtype == normal.dtype == np.float32 and image.shape == normal.shape == (1, 3, 32, 32)
    assert len(np.unique(image)) <= 3 * 2 * 2 < len(np.unique(normal))  # one value a 16x16 cell per channel
    sequence = benchmark_feeds(_model((1, 576)), {}, "image")["x"]
    assert np.array_equal(sequence, benchmark_feeds(_model((1, 576)), {}, "normal")["x"])
