"""Taylor importance: a unit whose activation is zero everywhere costs nothing to remove."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search.darp import DarpConfig, initial_logits
from darp_onnx.search.loss import TaskLoss
from darp_onnx.search.taylor import taylor_scores
from darp_onnx.training.dataset import load_dataset

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"


def test_a_dead_channel_scores_zero_and_others_do_not():
    model = load_model(SAMPLES / "resnet.onnx")
    data = load_dataset(SAMPLES / "data" / "digits_source.npz", model).subset(np.arange(32))
    analysis = analyse(model)
    proxy = build_proxy(model).eval()
    output_group = {}
    for step in proxy.steps:
        amap = analysis.axis_maps.get((step.outputs[0], 1)) if step.op_type == "Conv" else None
        if amap is not None and amap.segments:
            output_group[step] = amap.segments[0].group
    owners = [g for g in output_group.values()]
    # a convolution whose output channels no other convolution writes (not the residual stream)
    stem, group = next((s, g) for s, g in output_group.items() if owners.count(g) == 1)
    with torch.no_grad():  # channel 3 of that conv: zero weights and a negative bias, so ReLU outputs 0
        proxy.tensor(stem.inputs[1])[3].zero_()
        proxy.tensor(stem.inputs[2])[3] = -1.0
    scores = taylor_scores(proxy, analysis, data, TaskLoss(labels=data.labels), batches=2, batch_size=16)
    assert scores[group][3] == 0.0
    assert np.count_nonzero(scores[group]) == len(scores[group]) - 1
    assert all(np.all(np.isnan(s)) for gid, s in scores.items() if analysis.groups[gid].kind == "branch")


def test_initial_logits_follow_the_rank_within_each_group():
    model = load_model(SAMPLES / "resnet.onnx")
    groups = [g for g in analyse(model).prunable() if g.kind != "branch"][:2]
    scores = {g.id: np.arange(g.size, dtype=float)[::-1] for g in groups}
    logits = initial_logits(groups, DarpConfig(init_logit=3.0, init_spread=2.0), scores)
    for g in groups:
        assert logits[g.id][0] == 5.0 and logits[g.id][-1] == 1.0
        assert np.all(np.diff(logits[g.id]) < 0)


def test_a_model_whose_only_prunable_units_are_branches_scores_without_a_gradient():
    """A MobileNetV4 with its weights behind Casts had no prunable channel, only residual branches: the
    Taylor pass asked autograd for the gradient of nothing and the search ended in an internal error."""
    model = load_model(SAMPLES / "resnet.onnx")
    data = load_dataset(SAMPLES / "data" / "digits_source.npz", model).subset(np.arange(16))
    analysis = analyse(model)
    for group in analysis.prunable():
        if group.kind != "branch":
            group.frozen = "frozen for the test"
    assert analysis.prunable()  # branches left
    scores = taylor_scores(build_proxy(model).eval(), analysis, data, TaskLoss(labels=data.labels), batches=1,
                           batch_size=8)
    assert {gid for gid in scores if analysis.groups[gid].kind == "branch"} == {g.id for g in analysis.prunable()}
