"""Latencies are timed on a smooth picture where the data are synthetic images (Dataset.timing_feed)."""

import numpy as np

from darp_onnx.load.inputs import smooth_image
from darp_onnx.training.dataset import Dataset, synthetic_dataset
from tests.groups.builder import GraphBuilder


def test_smooth_image_repeats_cells_on_the_two_spatial_axes_of_nchw_and_nhwc():
    rng = np.random.default_rng(0)
    for shape, spatial in (((1, 3, 40, 50), (2, 3)), ((1, 40, 50, 3), (1, 2))):
        image = smooth_image(shape, rng, cell=16)
        assert image.shape == shape and np.abs(image).max() <= 1.0
        for axis in spatial:  # pixels 0-15 along a spatial axis are one cell, pixel 16 starts the next
            first = np.take(image, range(16), axis=axis)
            assert np.all(first == np.take(image, [0], axis=axis))
            assert not np.all(np.take(image, [16], axis=axis) == np.take(image, [0], axis=axis))


def _conv_model():
    b = GraphBuilder(7, opset=17)
    return b.build(b.conv(b.input("x", ["n", 3, 32, 32]), 3, 4))


def test_synthetic_images_are_timed_on_a_smooth_picture():
    data = synthetic_dataset(_conv_model(), samples=4, shapes={"x": (1, 3, 32, 32)})
    feed = data.timing_feed()
    assert feed["x"].shape == (1, 3, 32, 32) and feed["x"].dtype == np.float32
    assert len(np.unique(feed["x"])) <= 3 * 2 * 2 < len(np.unique(data.first_feed()["x"]))
    assert np.array_equal(feed["x"], data.timing_feed()["x"])  # seeded


def test_real_samples_and_non_image_inputs_are_timed_as_they_are():
    images = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    real = Dataset({"x": images}, None, "photos.npz")
    assert np.array_equal(real.timing_feed()["x"], images[:1])
    sequence = Dataset({"s": np.random.default_rng(2).standard_normal((4, 576)).astype(np.float32)})
    assert np.array_equal(sequence.timing_feed()["s"], sequence.first_feed()["s"])


def test_several_samples_are_timed_in_turn():
    images = np.random.default_rng(3).standard_normal((6, 3, 32, 32)).astype(np.float32)
    feeds = Dataset({"x": images}, None, "photos.npz").timing_feeds(count=4)
    assert len(feeds) == 4 and all(np.array_equal(f["x"], images[i:i + 1]) for i, f in enumerate(feeds))
    data = synthetic_dataset(_conv_model(), samples=3, shapes={"x": (1, 3, 32, 32)})
    smooth = data.timing_feeds(count=4)
    assert len(smooth) == 3 and np.array_equal(smooth[0]["x"], data.timing_feed()["x"])
    assert not np.array_equal(smooth[0]["x"], smooth[1]["x"])
