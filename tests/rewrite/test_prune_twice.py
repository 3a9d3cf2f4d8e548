"""A model the rewriter wrote can be pruned again (iterative pruning): the edited shape constants it
added get fresh names the second time, and the result still runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.rewrite import rewrite
from darp_onnx.search import BASELINES, extract_masks, make_budget
from darp_onnx.validation.checks import run_model

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def _prune(model, fraction):
    analysis = analyse(model)
    cost = CostModel(model, analysis)
    masks = extract_masks(BASELINES["l1"](model, analysis, 0), cost, make_budget(cost, target_flops=fraction))
    return rewrite(model, analysis, masks), cost.macs(masks)


@pytest.mark.parametrize("name", ["resnet", "mobilenetv3", "yolov8", "vit"])
def test_a_pruned_model_prunes_again(name):
    original = load_model(SAMPLES / f"{name}.onnx")
    once, macs_once = _prune(original, 0.7)
    twice, macs_twice = _prune(once, 0.95)
    names = [t.name for t in twice.graph.initializer]
    assert len(names) == len(set(names))
    assert macs_twice < macs_once
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)}
    (logits,), _, _ = run_model(twice, feeds)
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
