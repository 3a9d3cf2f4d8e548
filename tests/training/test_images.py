"""Image folders + presets give the arrays a hand computation gives; bad images are counted and skipped."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from PIL import Image

from darp_onnx.errors import BadInputError
from darp_onnx.training.dataset import load_dataset
from darp_onnx.training.preprocess import parse_preprocess, table_to_spec
from tests.training.digits_images import colour, digit_pixels, image_model, write_pngs

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _load(folder, shape, preprocess, elem=TensorProto.FLOAT, **kwargs):
    return load_dataset(folder, image_model(shape, elem), preprocess=preprocess, **kwargs).inputs["x"]


def test_unit_grey_nchw(tmp_path):
    pixels = write_pngs(tmp_path, 4)
    x = _load(tmp_path, ["N", 1, 32, 32], "unit")
    assert x.shape == (4, 1, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], np.stack(pixels) / 255.0, atol=1e-7)


def test_imagenet_crops_the_centre_and_normalises(tmp_path):
    pixels = write_pngs(tmp_path, 3, rgb=True)
    x = _load(tmp_path, ["N", 3, 28, 28], "imagenet")  # 0.875 of 32 px is 28 px: a crop without resampling
    want = (np.stack(pixels)[:, 2:30, 2:30] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(x, want.transpose(0, 3, 1, 2), atol=1e-5)


def test_yolo_letterboxes_with_grey_114(tmp_path):
    wide = colour(digit_pixels(1)[0])[:16]  # 32 wide, 16 high
    Image.fromarray(wide).save(tmp_path / "wide.png")
    x = _load(tmp_path, [1, 3, 32, 32], "yolo")
    want = np.full((32, 32, 3), 114 / 255.0)
    want[8:24] = wide / 255.0
    np.testing.assert_allclose(x[0], want.transpose(2, 0, 1), atol=1e-6)


def test_topleft_pads_on_the_right_and_bottom_as_text_recognisers_do(tmp_path):
    line = colour(digit_pixels(1)[0])[:16]  # 32 wide, 16 high: into 16 x 64 it fits at full size
    Image.fromarray(line).save(tmp_path / "line.png")
    x = _load(tmp_path, [1, 3, 16, 64], "unit,resize=topleft,pad=0")
    want = np.zeros((16, 64, 3))
    want[:, :32] = line / 255.0
    np.testing.assert_allclose(x[0], want.transpose(2, 0, 1), atol=1e-6)
    tall = colour(digit_pixels(1)[0])[:, :16]  # 16 wide, 32 high, into 32 x 32: padded on the right
    Image.fromarray(tall).save(tmp_path / "line.png")
    x = _load(tmp_path, [1, 3, 32, 32], "unit,resize=topleft,pad=255")
    assert np.allclose(x[0][:, :, 16:], 1.0) and np.allclose(x[0][:, :, :16], tall.transpose(2, 0, 1) / 255.0)


def test_height_keeps_a_text_line_at_the_input_height_and_squeezes_only_a_long_one(tmp_path):
    """PaddleOCR's direction classifier takes a 9:1 line at 48 x 192 (squeezed), not shrunk to 21 pixels high."""
    line = np.tile(np.linspace(0, 250, 40).astype(np.uint8), (10, 1))  # 40 x 10: 4:1
    Image.fromarray(line).save(tmp_path / "line.png")
    short = _load(tmp_path, [1, 1, 20, 200], "unit,resize=height,pad=0")[0, 0]
    assert np.all(short[:, 80:] == 0) and short[:, :80].min() >= 0 and short[:, 79].max() > 0.9  # 80 wide, padded
    squeezed = _load(tmp_path, [1, 1, 20, 40], "unit,resize=height,pad=0")[0, 0]  # 80 would not fit: squeezed
    np.testing.assert_allclose(squeezed, _load(tmp_path, [1, 1, 20, 40], "unit,resize=stretch")[0, 0], atol=1e-6)


def test_stretch_crop_keeps_the_centre_share_of_each_side(tmp_path):
    wide = np.zeros((20, 40), np.uint8)
    wide[2:18, 4:36] = 200  # the centre 0.8 of each side is bright, the margins dark
    Image.fromarray(wide).save(tmp_path / "wide.png")
    x = _load(tmp_path, [1, 1, 16, 32], "unit,resize=stretch-crop,crop=0.8")
    np.testing.assert_allclose(x[0, 0], np.full((16, 32), 200 / 255.0), atol=1e-6)
    ramp = np.tile((np.arange(40) * 5).astype(np.uint8), (20, 1))  # value = 5 x column
    Image.fromarray(ramp).save(tmp_path / "wide.png")
    stretched = _load(tmp_path, [1, 1, 32, 32], "unit,resize=stretch-crop,crop=0.8")[0, 0, 16] * 255 / 5
    cut = _load(tmp_path, [1, 1, 32, 32], "unit,resize=crop,crop=0.8")[0, 0, 16] * 255 / 5
    assert 3 < stretched[0] < 6 and 34 < stretched[-1] < 37  # columns 4-36 of the source, squeezed to 1:1
    assert 11 < cut[0] < 14 and 26 < cut[-1] < 29  # the centre square, columns 12-28


def test_caffe_is_bgr_minus_mean_unscaled(tmp_path):
    pixels = write_pngs(tmp_path, 2, rgb=True)
    x = _load(tmp_path, ["N", 3, 32, 32], "caffe")
    want = np.stack(pixels)[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(x, want.transpose(0, 3, 1, 2), atol=1e-4)


def test_inception_nhwc_to_minus_one_one(tmp_path):
    pixels = write_pngs(tmp_path, 2, rgb=True)
    x = _load(tmp_path, ["N", 32, 32, 3], "inception")
    assert x.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(x, (np.stack(pixels) / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_raw_uint8_model_gets_the_pixels(tmp_path):
    pixels = write_pngs(tmp_path, 2)
    x = _load(tmp_path, ["N", 1, 32, 32], "raw", elem=TensorProto.UINT8)
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], np.stack(pixels))


def test_stretch_resizes_to_the_model_size(tmp_path):
    write_pngs(tmp_path, 2)
    x = _load(tmp_path, ["N", 1, 16, 16], "unit")
    want = np.stack([np.asarray(Image.open(tmp_path / f"{i:02d}.png").resize((16, 16), Image.Resampling.BILINEAR))
                     for i in range(2)]) / 255.0
    np.testing.assert_allclose(x[:, 0], want, atol=1e-6)


def test_overrides_and_toml_table(tmp_path):
    pixels = write_pngs(tmp_path, 1, rgb=True)
    spec = table_to_spec({"preset": "unit", "channels": "bgr", "mean": [0.5, 0.5, 0.5], "std": [0.25]})
    x = _load(tmp_path, ["N", 3, 32, 32], spec)
    want = (pixels[0][..., ::-1] / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(x[0], want.transpose(2, 0, 1), atol=1e-6)


def test_bad_image_is_counted_and_skipped(tmp_path):
    write_pngs(tmp_path, 3)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    dataset = load_dataset(tmp_path, image_model(["N", 1, 32, 32]))
    assert len(dataset) == 3
    assert len(dataset.skipped) == 1 and "broken.jpg" in dataset.skipped[0]
    assert dataset.describe()["skipped"] == 1


def test_an_array_named_otherwise_is_said_to_feed_the_only_input(tmp_path):
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 1, 32, 32), np.float32))
    dataset = load_dataset(tmp_path / "d.npz", image_model(["N", 1, 32, 32]))
    assert dataset.notes == [f"{tmp_path / 'd.npz'}: array 'input' feeds input 'x' (the only array); name it 'x' "
                             "to say so"]
    np.savez(tmp_path / "named.npz", x=np.zeros((2, 1, 32, 32), np.float32))
    assert load_dataset(tmp_path / "named.npz", image_model(["N", 1, 32, 32])).notes == []


def test_integer_pixels_cast_to_float_are_noted_with_their_range(tmp_path):
    pixels = np.arange(2 * 32 * 32, dtype=np.uint8).reshape(2, 1, 32, 32)
    np.savez(tmp_path / "d.npz", x=pixels)
    dataset = load_dataset(tmp_path / "d.npz", image_model(["N", 1, 32, 32]))
    assert dataset.inputs["x"].dtype == np.float32
    assert any("holds uint8 values (0 to 255), cast to float32 as they are" in n for n in dataset.describe()["notes"])


def test_max_samples_picks_a_seeded_subset(tmp_path):
    write_pngs(tmp_path, 6)
    first = load_dataset(tmp_path, image_model(["N", 1, 32, 32]), max_samples=4, seed=1).inputs["x"]
    again = load_dataset(tmp_path, image_model(["N", 1, 32, 32]), max_samples=4, seed=1).inputs["x"]
    assert first.shape[0] == 4
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("files", [[], ["a.png"]], ids=["empty", "all-bad"])
def test_empty_or_all_bad_folder_is_one_line_error(tmp_path, files):
    for name in files:
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(BadInputError) as info:
        load_dataset(tmp_path, image_model(["N", 1, 32, 32]))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("spec", ["nosuch", "unit,resize=zoom", "unit,mean=a/b", "unit,colour=rgb", "unit,crop=2"])
def test_bad_preprocess_spec_is_one_line_error(spec):
    with pytest.raises(BadInputError) as info:
        parse_preprocess(spec)
    assert "--preprocess" in str(info.value) and "\n" not in str(info.value)


def test_symbolic_image_size_asks_for_input_shape(tmp_path):
    write_pngs(tmp_path, 1)
    with pytest.raises(BadInputError, match="--input-shape"):
        load_dataset(tmp_path, image_model(["N", 1, "H", "W"]))
    x = load_dataset(tmp_path, image_model(["N", 1, "H", "W"]), input_shapes={"x": (1, 1, 32, 32)}).inputs["x"]
    assert x.shape == (1, 1, 32, 32)


def test_the_note_says_grey_for_a_one_channel_input(tmp_path):
    """A face-expression model taking [N, 64, 64, 1] was told its images were read as RGB."""
    from darp_onnx.training.dataset import data_notes

    write_pngs(tmp_path, 2, rgb=True)
    grey = load_dataset(tmp_path, image_model(["N", 1, 32, 32], TensorProto.FLOAT), preprocess="inception")
    colour_ = load_dataset(tmp_path, image_model(["N", 3, 32, 32], TensorProto.FLOAT), preprocess="inception")
    assert ": GREY, resized" in data_notes(grey)[0]
    assert ": RGB, resized" in data_notes(colour_)[0]


def test_the_note_says_how_much_of_each_image_a_crop_keeps(tmp_path):
    """ocrspine's 80 x 160 line classifier fitted on lines centre-cropped by `imagenet` read none of them right
    when fed whole: nothing had said the crop kept the middle fifth of each line."""
    from darp_onnx.training.dataset import data_notes
    from darp_onnx.training.images import kept_share

    line = colour(digit_pixels(1)[0])[:8]  # 32 wide, 8 high: 4:1 into a 2:1 input
    Image.fromarray(line).save(tmp_path / "line.png")
    dataset = load_dataset(tmp_path, image_model([1, 3, 16, 32], TensorProto.FLOAT), preprocess="imagenet")
    note = data_notes(dataset)[0]
    assert "the crop keeps 38% of each image" in note and "resize=stretch" in note
    spec = parse_preprocess("imagenet")
    assert kept_share((32, 8), spec, (32, 16)) == pytest.approx(0.5 * 0.875 ** 2)
    assert kept_share((32, 8), parse_preprocess("imagenet,resize=stretch"), (32, 16)) == 1.0
    square = load_dataset(tmp_path, image_model([1, 3, 16, 64], TensorProto.FLOAT), preprocess="imagenet")
    assert "the crop keeps" not in data_notes(square)[0]  # 4:1 into 4:1: only the 0.875 margin goes
