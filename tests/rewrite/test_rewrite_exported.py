"""Rewrites of exporter patterns equal the gated model (ONNX oracle and proxy) under random masks, and
graphs with a dynamic batch keep it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darp_onnx.groups import analyse
from darp_onnx.rewrite import rewrite
from tests.groups.harness import assert_equivalent, feeds_for, random_masks, run_ort
from tests.groups.models_exported import MODELS


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=4, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_masks_match_the_gated_model(name, seed):
    model = MODELS[name]()
    analysis = analyse(model)
    assert_equivalent(model, analysis, random_masks(analysis, np.random.default_rng(seed)), seed=seed % 7)


@pytest.mark.parametrize("name", ["view_batch_flatten", "interpolate_to_shape", "view_channels_literal",
                                  "broadcast_like", "crnn_lstm"])
def test_pruned_models_keep_their_dynamic_dims(name):
    model = MODELS[name]()
    analysis = analyse(model)
    pruned = rewrite(model, analysis, random_masks(analysis, np.random.default_rng(3)))
    for sizes in ({"N": 1, "H": 4, "W": 6, "T": 3}, {"N": 3, "H": 10, "W": 8, "T": 7}):
        original = run_ort(model, feeds_for(model, sizes=sizes))
        for a, e in zip(run_ort(pruned, feeds_for(model, sizes=sizes)), original, strict=True):
            assert a.shape == e.shape


@pytest.mark.parametrize("name", ["crnn_lstm", "gru_after_linear", "channels_last", "view_batch_flatten"])
def test_rewritten_model_costs_what_the_cost_model_predicts(name):
    from darp_onnx.cost import CostModel, count_graph

    model = MODELS[name]()
    analysis = analyse(model)
    shapes = {"x": tuple(d.dim_value or (1 if i == 0 else 5) for i, d in
                         enumerate(model.graph.input[0].type.tensor_type.shape.dim))}
    cost = CostModel(model, analysis, shapes)
    assert cost.full_macs == count_graph(model, shapes).macs
    masks = random_masks(analysis, np.random.default_rng(1))
    counted = count_graph(rewrite(model, analysis, masks), shapes)
    assert (counted.macs, counted.params) == (cost.macs(masks), cost.params(masks))
    assert counted.macs < cost.full_macs
