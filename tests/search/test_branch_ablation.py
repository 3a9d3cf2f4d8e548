"""Residual branches decided by what switching them off costs (search/branch_ablation.py, darp._branch_term)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search import DarpConfig, darp_search, make_budget
from darp_onnx.search.branch_ablation import ablation_steps, branch_ablation_scores
from darp_onnx.search.darp import _branch_term
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.loss import TaskLoss
from darp_onnx.search.taylor import run_darp
from darp_onnx.training.batchnorm import insert_batchnorm
from darp_onnx.training.dataset import load_dataset
from darp_onnx.training.steps import batch_outputs

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"


def _setup(name: str, samples: int = 64):
    torch.set_num_threads(1)
    model = load_model(SAMPLES / f"{name}.onnx")
    data = load_dataset(DATA, model).subset(np.arange(samples))
    analysis = analyse(model)
    cost_model = CostModel(model, analysis, resolve_input_shapes(model, {}))
    return build_proxy(model).eval(), analysis, cost_model, data, TaskLoss(labels=data.labels)


def _branches(analysis) -> list[int]:
    return [g.id for g in analysis.prunable() if g.kind == "branch"]


def test_each_branch_scores_the_loss_rise_of_switching_it_off():
    proxy, analysis, _, data, loss_fn = _setup("vit")
    scores = branch_ablation_scores(proxy, analysis, data, loss_fn, batch_size=16, seed=3)
    branches = _branches(analysis)
    assert sorted(scores) == branches and len(branches) == 8
    idx = np.random.default_rng(3).choice(len(data), size=16, replace=False)
    handle = attach_gates(proxy, analysis)
    with torch.no_grad():
        whole = float(loss_fn(batch_outputs(proxy, data, idx, "cpu"), idx))
        handle.set({branches[-1]: torch.zeros(1)})
        off = float(loss_fn(batch_outputs(proxy, data, idx, "cpu"), idx))
    handle.remove()
    assert scores[branches[-1]] == pytest.approx(off - whole, rel=1e-5, abs=1e-6)
    assert scores[branches[0]] > 10 * scores[branches[-1]] > 0  # the first attention branch matters most
    assert ablation_steps(analysis) == 3  # 9 forward passes, a third of a step each


def test_held_statistics_leave_the_running_statistics_alone():
    proxy, _, _, data, _ = _setup("resnet", samples=32)
    handle = insert_batchnorm(proxy, data, samples=32)
    layer = next(iter(handle.layers.values()))
    before = layer.running_mean.clone()
    proxy.train()
    with torch.no_grad():
        with handle.held_statistics():
            batch_outputs(proxy, data, np.arange(16), "cpu")
        assert torch.equal(layer.running_mean, before)
        assert layer.momentum == 0.1
        batch_outputs(proxy, data, np.arange(16), "cpu")
    assert not torch.equal(layer.running_mean, before)  # a plain training pass does update them
    handle.fold()


def test_the_branch_term_raises_a_branch_by_its_loss_rise_only():
    theta = {1: torch.zeros(1, requires_grad=True), 2: torch.zeros(1, requires_grad=True)}
    probs = {gid: torch.sigmoid(th) for gid, th in theta.items()}
    _branch_term(probs, {1: 2.0}).backward()
    assert theta[1].grad.item() == pytest.approx(-2.0 * 0.25)  # -rise x dp/dtheta: descent raises it
    assert theta[2].grad is None
    assert _branch_term(probs, {}) == 0.0


def test_a_branch_whose_removal_costs_much_is_kept_by_the_search():
    proxy, analysis, cost_model, data, loss_fn = _setup("vit")
    branches = _branches(analysis)
    config = DarpConfig(steps=12, batch_size=8, init="constant", batchnorm=False, target_ramp=0.0)

    def final_logits(losses):
        torch.manual_seed(0)
        search_proxy = build_proxy(load_model(SAMPLES / "vit.onnx"))
        result = darp_search(search_proxy, analysis, cost_model, make_budget(cost_model, target_flops=0.25), data,
                             loss_fn, config, branch_losses=losses)
        return {gid: float(result.scores[gid][0]) for gid in branches}

    costly = branches[-1]
    logits = final_logits({gid: (100.0 if gid == costly else 0.0) for gid in branches})
    assert logits[costly] > config.init_logit  # raised while the others fell under the penalty
    assert all(logits[gid] < config.init_logit for gid in branches if gid != costly)
    plain = final_logits(None)
    assert plain[costly] < config.init_logit  # without the term the penalty takes it down too


def test_ablation_runs_only_where_batchnorm_does_not_normalise_most_layers():
    steps = {}
    for name in ("vit", "resnet"):
        proxy, analysis, cost_model, data, loss_fn = _setup(name, samples=32)
        config = DarpConfig(steps=16, batch_size=8)
        result = run_darp(proxy, analysis, cost_model, make_budget(cost_model, target_flops=0.5), data, loss_fn,
                          config)
        steps[name] = len(result.history)
    assert steps == {"vit": 16 - 4 - 3, "resnet": 16 - 4}  # Taylor's 4 passes; the ViT's 8 branches: 3 steps


def test_progress_counts_the_taylor_and_ablation_steps_as_the_plan_does():
    """The bar's total is the plan's search steps, Taylor batches and branch ablations included; the steps it
    was told ended 7 short of it on the ViT (a user read '121/129' as a search cut short)."""
    proxy, analysis, cost_model, data, loss_fn = _setup("vit", samples=32)
    seen = []
    run_darp(proxy, analysis, cost_model, make_budget(cost_model, target_flops=0.5), data, loss_fn,
             DarpConfig(steps=16, batch_size=8), on_step=lambda record: seen.append(record["step"]))
    assert seen[0] == 4 + 3 and seen[-1] + 1 == 16
