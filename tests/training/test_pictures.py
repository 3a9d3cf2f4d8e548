"""Synthetic pictures for data-free pruning: which inputs get them, and in which value range."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from darp_onnx.load.input_normalisation import graph_normalisation
from darp_onnx.training.dataset import load_dataset, synthetic_dataset
from darp_onnx.training.pictures import (
    IMAGENET,
    RAW,
    SIGNED,
    UNIT,
    UNNORMALISED_GRAPH,
    channel_axis,
    pictures,
    pixel_ranges,
    raw_range_for,
)
from tests.training.digits_images import write_pngs


def _conv_model(pre_nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], shape=(None, 3, 32, 32),
                conv_input: str = "n") -> onnx.ModelProto:
    """x -> `pre_nodes` (ending in `conv_input`) -> Conv -> y."""
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    inits = [weight, bias] + [numpy_helper.from_array(v.astype(np.float32), k) for k, v in consts.items()]
    dims = ["N" if d is None else d for d in shape]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", [conv_input, "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([*pre_nodes, conv], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_picture_inputs_are_four_dimensional_floats_with_one_or_three_channels():
    assert channel_axis((1, 3, 32, 32), np.dtype(np.float32)) == 1
    assert channel_axis((1, 64, 48, 3), np.dtype(np.float32)) == 3
    assert channel_axis((1, 3, 32, 32), np.dtype(np.int64)) is None
    assert channel_axis((1, 64, 8, 8), np.dtype(np.float32)) is None  # a feature map
    assert channel_axis((1, 3, 8, 8), np.dtype(np.float32)) is None  # too small to be a picture
    assert channel_axis((1, 3, 64), np.dtype(np.float32)) is None


def test_pictures_fill_the_unit_range_and_are_smooth():
    batch = pictures(6, 3, 40, 48, np.random.default_rng(0))
    assert batch.shape == (6, 3, 40, 48) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1
    neighbour_step = np.abs(np.diff(batch, axis=3)).mean()
    noise_step = np.abs(np.diff(np.random.default_rng(0).uniform(0, 1, batch.shape), axis=3)).mean()
    assert neighbour_step < 0.25 * noise_step  # neighbouring pixels alike, as in photos
    assert not np.allclose(batch[0], batch[1])


def test_a_graph_that_divides_by_255_gets_raw_pixels():
    nodes = [helper.make_node("Div", ["x", "k"], ["n"])]
    model = _conv_model(nodes, {"k": np.array(255.0)})
    scale, offset = graph_normalisation(model, "x", 1)
    assert np.allclose(scale, 1 / 255) and np.allclose(offset, 0)
    assert pixel_ranges(model, "x", 1) == (RAW,)
    data = synthetic_dataset(model, samples=8, shapes={"x": (1, 3, 32, 32)}).inputs["x"]
    assert data.min() >= 0 and data.max() <= 255 and data.max() > 50


def test_per_channel_mean_and_std_in_the_graph_are_followed_through_cast_and_transpose():
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["t"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["c", "mean"], ["s"]),
             helper.make_node("Div", ["s", "std"], ["n"])]
    model = _conv_model(nodes, {"mean": mean, "std": std}, shape=(None, 32, 32, 3))
    scale, offset = graph_normalisation(model, "x", 3)
    assert np.allclose(scale, 1 / std.ravel()) and np.allclose(offset, -mean.ravel() / std.ravel())
    assert pixel_ranges(model, "x", 3) == (UNIT,)  # ImageNet numbers in [0, 1] units: the caller feeds [0, 1]


def test_the_raw_range_is_the_one_the_normalisation_centres():
    assert raw_range_for((np.array([1 / 127.5]), np.array([-1.0]))) == RAW
    assert raw_range_for((np.array([2.0]), np.array([-1.0]))) == UNIT
    assert raw_range_for((np.array([1.0]), np.array([0.0]))) == SIGNED


def test_constants_that_vary_over_pixels_are_not_a_normalisation():
    nodes = [helper.make_node("Sub", ["x", "bg"], ["n"])]
    model = _conv_model(nodes, {"bg": np.zeros((1, 1, 32, 32)) + 0.5})
    assert graph_normalisation(model, "x", 1) is None
    assert pixel_ranges(model, "x", 1) == UNNORMALISED_GRAPH


def test_without_a_normalisation_samples_take_every_convention_in_turn():
    model = _conv_model([], {}, conv_input="x")
    data = synthetic_dataset(model, samples=6, shapes={"x": (1, 3, 32, 32)}).inputs["x"]
    assert pixel_ranges(model, "x", 1) == UNNORMALISED_GRAPH == (UNIT, IMAGENET, SIGNED)
    for turn in (0, 3):
        unit, imagenet, signed = data[turn], data[turn + 1], data[turn + 2]
        assert unit.min() >= 0 and unit.max() <= 1
        assert imagenet.min() >= -2.2 and imagenet.max() <= 2.7 and imagenet.min() < -0.5
        assert signed.min() >= -1 and signed.max() <= 1 and signed.min() < 0


def test_fixed_batch_picture_inputs_get_pictures_in_whole_feeds():
    nodes = [helper.make_node("Div", ["x", "k"], ["n"])]
    model = _conv_model(nodes, {"k": np.array(255.0)}, shape=(2, 3, 32, 32))
    data = synthetic_dataset(model, samples=4, micro_batches=True).inputs["x"]
    assert data.shape == (4, 2, 3, 32, 32) and data.min() >= 0 and data.max() > 50


def test_image_files_without_a_preprocess_get_the_range_the_graph_normalises_from(tmp_path):
    pixels = write_pngs(tmp_path, 3)  # grey 32x32 pictures
    divides = _conv_model([helper.make_node("Div", ["x", "k"], ["n"])], {"k": np.array(255.0)},
                          shape=(None, 1, 32, 32))
    divides.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w"))
    raw = load_dataset(tmp_path, divides).inputs["x"]
    np.testing.assert_allclose(raw[:, 0], np.stack(pixels).astype(np.float32), atol=1e-4)
    plain = _conv_model([], {}, shape=(None, 1, 32, 32), conv_input="x")
    assert load_dataset(tmp_path, plain).inputs["x"].max() <= 1.0  # no normalisation: the 'unit' default
    assert load_dataset(tmp_path, divides, preprocess="unit").inputs["x"].max() <= 1.0  # the user's choice wins


def test_pictures_in_several_ranges_keep_reinserted_batchnorm_on_fixed_statistics():
    """Batch statistics over a batch that mixes [0, 1], ImageNet and [-1, 1] pictures are no statistics of
    any input the model will see (a ResNet-18, data-free: output error 5.6 on photos with them, 0.90 without)."""
    from darp_onnx.proxy import build_proxy
    from darp_onnx.training.batchnorm import insert_batchnorm

    plain = _conv_model([], {}, conv_input="x")
    mixed = synthetic_dataset(plain, samples=6, shapes={"x": (1, 3, 32, 32)})
    assert mixed.mixed_ranges
    handle = insert_batchnorm(build_proxy(plain), mixed, samples=6, batch_size=6)
    assert handle.layers and not any(layer.batch_stats for layer in handle.layers.values())
    divides = _conv_model([helper.make_node("Div", ["x", "k"], ["n"])], {"k": np.array(255.0)})
    one_range = synthetic_dataset(divides, samples=6, shapes={"x": (1, 3, 32, 32)})
    assert not one_range.mixed_ranges
    handle = insert_batchnorm(build_proxy(divides), one_range, samples=6, batch_size=6)
    assert all(layer.batch_stats for layer in handle.layers.values())


def test_an_input_of_bytes_gets_pictures_in_0_255():
    """A MobileNetV4 export takes uint8 NHWC pixels and normalises inside: its synthetic inputs were 0 or 1,
    and every one gave the same output."""
    from onnx import TensorProto, helper

    from darp_onnx.training.dataset import synthetic_dataset

    x = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 32, 32, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 32, 3])
    graph = helper.make_graph([helper.make_node("Cast", ["image"], ["y"], to=TensorProto.FLOAT)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    data = synthetic_dataset(model, samples=4, seed=0)
    pixels = data.inputs["image"]
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 32, 32, 3)
    assert pixels.max() > 150 and len(np.unique(pixels)) > 50
    assert data.picture_ranges == {"image": ("0-255",)}
