from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darp_onnx.errors import ValidationFailedError
from darp_onnx.groups import analyse
from darp_onnx.rewrite import rewrite
from tests.groups.harness import assert_equivalent, feeds_for, random_masks, run_ort
from tests.groups.models import MODELS

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
SAMPLE_NAMES = ["resnet", "mobilenetv3", "yolov8", "vit"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_all_kept_rewrite_equals_the_original(name):
    model = MODELS[name]()
    analysis = analyse(model)
    pruned = rewrite(model, analysis, analysis.all_kept())
    feeds = feeds_for(model)
    for a, e in zip(run_ort(pruned, feeds), run_ort(model, feeds), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)
    assert len(pruned.graph.node) == len(model.graph.node)


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_masks_match_the_gated_model(name, seed):
    model = MODELS[name]()
    analysis = analyse(model)
    assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed=seed % 7)


def test_rewrite_shrinks_weights_and_keeps_the_input_model():
    model = MODELS["conv_chain"]()
    before = model.SerializeToString()
    analysis = analyse(model)
    masks = {0: np.array([1, 0, 1, 0, 1, 0], bool)}
    pruned = rewrite(model, analysis, masks)
    assert model.SerializeToString() == before
    dims = {i.name: list(i.dims) for i in pruned.graph.initializer}
    conv1, conv2 = [n for n in model.graph.node if n.op_type == "Conv"][:2]
    assert dims[conv1.input[1]][0] == 3
    assert dims[conv2.input[1]][1] == 3
    assert pruned.ir_version == model.ir_version


def test_dropping_a_branch_removes_its_nodes():
    model = MODELS["residual"]()
    analysis = analyse(model)
    branch = analysis.branches[0]
    masks = {branch.group: np.array([False])}
    pruned = assert_equivalent(model, analysis, masks)
    # the branch's nodes and its Add are gone
    assert len(pruned.graph.node) == len(model.graph.node) - len(branch.nodes) - 1
    names = {n.name for n in pruned.graph.node}
    assert not names & set(branch.nodes)


def test_depthwise_group_attribute_follows_the_kept_channels():
    model = MODELS["depthwise_se"]()
    analysis = analyse(model)
    masks = {0: np.array([1, 1, 0, 0, 1, 0, 1, 0], bool)}
    pruned = assert_equivalent(model, analysis, masks)
    dw = next(n for n in pruned.graph.node if n.name == analysis.shape_edits[0].node)
    assert onnx.helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 4


def test_a_depthwise_conv_transpose_passes_channels_through():
    """It froze its channels ("op not understood"): a per-channel upsampling keeps one channel per channel."""
    model = MODELS["depthwise_upsample"]()
    analysis = analyse(model)
    assert [g.size for g in analysis.prunable()] == [6]
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    pruned = rewrite(model, analysis, {analysis.prunable()[0].id: mask})
    up = next(n for n in pruned.graph.node if n.op_type == "ConvTranspose")
    assert onnx.helper.get_attribute_value(next(a for a in up.attribute if a.name == "group")) == 4
    assert_equivalent(model, analysis, {analysis.prunable()[0].id: mask})


def test_pruning_a_frozen_group_is_refused():
    model = MODELS["conv_chain"]()
    analysis = analyse(model)
    with pytest.raises(ValidationFailedError, match="frozen"):
        rewrite(model, analysis, {2: np.array([1, 0, 1, 1], bool)})


def test_keeping_no_channel_is_refused():
    model = MODELS["conv_chain"]()
    analysis = analyse(model)
    with pytest.raises(ValidationFailedError, match="at least 1"):
        rewrite(model, analysis, {0: np.zeros(6, bool)})


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_models_prune_equivalently(name):
    path = SAMPLES / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path.name} not generated")
    from darp_onnx.load.io import load_model

    model = load_model(path)
    analysis = analyse(model)
    assert analysis.prunable()
    for seed in range(2):
        assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed=seed)
