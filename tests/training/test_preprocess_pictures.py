"""Data-free pictures in the value range `--preprocess` names (it was ignored without --data)."""

from __future__ import annotations

import onnx

import darp_onnx
from tests.groups.builder import GraphBuilder


def _picture_model() -> onnx.ModelProto:
    """A small CNN that does not normalise its 32x32 picture input."""
    b = GraphBuilder(47)
    return b.build(b.conv(b.cbr(b.input("x", ["n", 3, 32, 32]), 3, 8), 8, 4))


def test_preprocess_without_data_sets_the_range_of_the_synthetic_pictures(tmp_path):
    """`--preprocess raw` without --data was accepted and ignored: a detector taking 0-255 pixels (ddddocr's
    YOLOX) was fitted on pictures in [0, 1], [-1, 1] and ImageNet-normalised ones, where it detects nothing."""
    notes = []
    darp_onnx.prune(_picture_model(), write=False, target_flops=0.7, search_steps=2, finetune_steps=1, batch_size=4,
                    synthetic_samples=8, latency_runs=1, channel_multiple=1, max_drift="off", preprocess="raw",
                    progress=lambda stage, info: notes.append(info.get("message", "")))
    said = [n for n in notes if "synthetic pictures" in n]
    assert said and "--preprocess raw" in said[0] and "[0, 1]" not in said[0]


def test_a_preset_gives_the_values_its_images_would_get():
    import numpy as np

    from darp_onnx.training.dataset import synthetic_dataset
    from darp_onnx.training.pictures import IMAGENET, range_of_preprocess
    from darp_onnx.training.preprocess import parse_preprocess

    spec = parse_preprocess("imagenet")
    ranged = range_of_preprocess("imagenet", spec.scale, spec.mean, spec.std)
    np.testing.assert_allclose(ranged.scale, IMAGENET.scale)
    np.testing.assert_allclose(ranged.offset, IMAGENET.offset)
    raw = parse_preprocess("raw")
    pictures = synthetic_dataset(_picture_model(), samples=4,
                                 pixel_range=range_of_preprocess("raw", raw.scale, raw.mean, raw.std)).inputs["x"]
    assert pictures.min() >= 0 and pictures.max() > 100  # 0-255, not [0, 1]
