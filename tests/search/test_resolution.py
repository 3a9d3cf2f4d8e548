"""Reduced-resolution search data: used for fully convolutional models, refused with a reason otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search.resolution import reduced_dataset, reduced_search_data
from darp_onnx.training.dataset import Dataset
from tests.training.digits_images import ROOT


def _digits(count: int = 4) -> Dataset:
    with np.load(ROOT / "sample_models" / "data" / "digits_source.npz") as data:
        return Dataset({"input": data["train_input"][:count]})


def test_downscale_halves_height_and_width():
    small = reduced_dataset(_digits(), 0.5)
    assert small.inputs["input"].shape == (4, 1, 16, 16) and small.inputs["input"].dtype == np.float32
    # antialiased: a 2x2 block average for an exact halving
    block = _digits().inputs["input"][0, 0, :2, :2].mean()
    assert abs(small.inputs["input"][0, 0, 0, 0] - block) < 0.05


def test_fully_convolutional_model_searches_small():
    proxy = build_proxy(load_model(ROOT / "sample_models" / "resnet.onnx"))
    small, reason = reduced_search_data(proxy, _digits(), 0.5)
    assert small is not None and small.inputs["input"].shape[2:] == (16, 16), reason


def test_vit_needs_the_full_size():
    proxy = build_proxy(load_model(ROOT / "sample_models" / "vit.onnx"))
    small, reason = reduced_search_data(proxy, _digits(), 0.5)
    assert small is None and "does not run" in reason


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_full_or_too_small_scale_is_not_used(scale):
    proxy = build_proxy(load_model(ROOT / "sample_models" / "resnet.onnx"))
    small, _ = reduced_search_data(proxy, _digits(), scale)
    assert small is None


def test_prune_says_when_the_resolution_asked_for_does_not_apply():
    """deepbrain's 5-D volume: --search-resolution 0.5 was ignored in silence (the ViT here: a fixed size)."""
    from darp_onnx import prune

    notes = []
    prune(str(ROOT / "sample_models" / "vit.onnx"), target_flops=0.6, search_steps=2, finetune_steps=1,
          synthetic_samples=8, latency_runs=1, write=False, max_drift="off", search_resolution=0.5,
          time_budget="5m", progress=lambda stage, info: notes.append(info.get("message", "")))
    assert any("--search-resolution 0.5 does not apply: the model does not run at 0.5x" in n for n in notes)
