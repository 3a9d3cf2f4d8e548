"""The real-model benchmark times image models on smooth pictures (benchmarks/real_models.py)."""

import numpy as np
from onnx import TensorProto, helper

from benchmarks.real_models import benchmark_feeds


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
