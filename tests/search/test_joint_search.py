"""The joint search: every step updates the logits and (by SGD) the weights from one backward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search import DarpConfig, darp_search, make_budget
from darp_onnx.search.loss import TaskLoss
from darp_onnx.training.dataset import load_dataset

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"


def _run(config: DarpConfig):
    """The search on the resnet sample (48 labelled digits, 50% MACs); returns its result, the proxy after it
    and the weights before it."""
    torch.set_num_threads(1)
    model = load_model(SAMPLES / "resnet.onnx")
    data = load_dataset(SAMPLES / "data" / "digits_source.npz", model).subset(np.arange(48))
    analysis = analyse(model)
    cost_model = CostModel(model, analysis, resolve_input_shapes(model, {}))
    proxy = build_proxy(model)
    before = {k: p.detach().clone() for k, p in proxy.weights.items()}
    result = darp_search(proxy, analysis, cost_model, make_budget(cost_model, target_flops=0.5), data,
                         TaskLoss(labels=data.labels), config)
    return result, proxy, before


def _search(joint: bool):
    config = DarpConfig(steps=6, batch_size=8, joint=joint, init="constant", batchnorm=False)
    result, proxy, before = _run(config)
    changed = sum(not torch.equal(before[k], p.detach()) for k, p in proxy.weights.items())
    return result, changed, len(before)


def test_every_joint_step_updates_logits_and_weights():
    result, changed, total = _search(joint=True)
    assert len(result.history) == 6
    assert all("expected_cost" in record for record in result.history)  # a logit update on every step
    assert changed == total  # SGD moved every weight tensor
    assert all(np.all(np.isfinite(s)) for s in result.scores.values())


def test_alternating_steps_update_the_logits_on_every_second_step_only():
    result, changed, total = _search(joint=False)
    assert ["expected_cost" in record for record in result.history] == [False, True] * 3
    assert 0 < changed <= total


def test_a_search_whose_weights_overflow_stops_with_the_last_finite_weights():
    """CenterFace (torch 1.2, a fixed batch of 10) overflowed in the search's weight training; the search went
    on with NaN weights, and the pruned model failed validation. The search now undoes the step that
    overflowed and stops there, keeping the logits learnt so far."""
    config = DarpConfig(steps=12, batch_size=8, init="constant", batchnorm=False, weight_optimizer="adam",
                        lr_weights=1e30)  # Adam is not clipped: every weight moves by about 1e30
    result, proxy, _ = _run(config)
    assert result.skipped > 0  # it stopped early
    assert all(torch.isfinite(p).all() for p in proxy.weights.values())
    assert all(np.all(np.isfinite(s)) for s in result.scores.values())
