"""Unit kinds are types with a policy: the extraction follows the policy of a group's kind, so a kind
registered here (unaligned, like attention heads will be) changes behaviour without touching the search."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.groups.units import BRANCH, CHANNEL, UNIT_KINDS, UnitKind, register_unit_kind, unit_kind
from darp_onnx.load.io import load_model
from darp_onnx.search import BASELINES, extract_masks, make_budget

RESNET = Path(__file__).resolve().parents[2] / "sample_models" / "resnet.onnx"


def test_built_in_kinds_and_their_policy():
    assert unit_kind("channel") is CHANNEL and CHANNEL.aligned and CHANNEL.counts_as_channels
    assert unit_kind("branch") is BRANCH and BRANCH.droppable and not BRANCH.aligned
    with pytest.raises(ValueError, match="unknown unit kind 'heads'"):
        unit_kind("heads")
    with pytest.raises(ValueError, match="already registered"):
        register_unit_kind(CHANNEL)


def test_every_group_of_an_analysis_has_a_registered_kind():
    analysis = analyse(load_model(RESNET))
    assert {g.kind for g in analysis.groups} == {"channel", "branch"}
    assert all(g.unit is UNIT_KINDS[g.kind] for g in analysis.groups)
    assert all(g.min_keep == 0 for g in analysis.groups if g.unit.droppable)


@pytest.fixture()
def unaligned_kind():
    kind = register_unit_kind(replace(CHANNEL, name="toy_unaligned", aligned=False))
    yield kind
    UNIT_KINDS.pop(kind.name)


def test_extraction_follows_the_kind_policy(unaligned_kind: UnitKind):
    model = load_model(RESNET)
    analysis = analyse(model)
    scores = BASELINES["l1"](model, analysis, 0)
    relabelled = copy.deepcopy(analysis)
    for group in relabelled.groups:
        if group.kind == "channel":
            group.kind = unaligned_kind.name
    results = {}
    for name, an in (("channel", analysis), ("toy", relabelled)):
        cost = CostModel(model, an)
        masks = extract_masks(scores, cost, make_budget(cost, target_flops=0.5), channel_multiple=8)
        results[name] = {g.id: int(masks[g.id].sum()) for g in an.prunable() if not g.unit.droppable}
    sizes = {g.id: g.size for g in analysis.groups}
    assert all(k == sizes[g] or k % 8 == 0 for g, k in results["channel"].items())
    assert any(k != sizes[g] and k % 8 != 0 for g, k in results["toy"].items())  # unaligned widths appear
    assert np.isfinite(list(results["toy"].values())).all()
