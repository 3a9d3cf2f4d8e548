"""Taylor importance (Molchanov et al. 2019): the first-order estimate of the loss change when a unit goes.

Every prunable group gets a gate of ones at its consumers (the search's gates); the gradient of the
loss with respect to a unit's gate is the first-order change of the loss if the unit were removed,
summed over everything that reads it (gradient x activation). Per batch the squared gradient is
accumulated; scores are normalised by their group's mean, as the L1 baseline's, so the extraction's
global ranking compares layers on a common scale. Residual branches get NaN, as in the other
baselines ("no score of its own"). It costs `batches` forward/backward passes: training steps in an
equal-budget comparison.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from darp_onnx.groups import ChannelAnalysis
from darp_onnx.proxy import ProxyModel
from darp_onnx.runtime import distributed
from darp_onnx.search.baselines import finish_scores
from darp_onnx.search.branch_ablation import ablation_steps, branch_ablation_scores
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.loss import LossFn
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.steps import batch_outputs, mostly_dense

TAYLOR_BATCHES = 8


def taylor_scores(proxy: ProxyModel, analysis: ChannelAnalysis, dataset: Dataset, loss_fn: LossFn, *,
                  batches: int = 8, batch_size: int = 32, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict[int, np.ndarray]:
    groups = [g for g in analysis.prunable() if g.kind != "branch"]
    gates = {g.id: torch.ones(g.size, device=device, requires_grad=True) for g in groups}
    totals = {g.id: np.zeros(g.size) for g in groups}
    if not gates:  # only whole branches are prunable (weights behind a Cast of float16 tensors: MobileNetV4)
        return finish_scores(analysis, totals, normalise=True)
    # under torchrun: one global batch of batch_size per rank, each rank its share, gradients averaged
    stream = dataset.batches(min(batch_size * distributed.world_size(), len(dataset)), np.random.default_rng(seed))
    handle = attach_gates(proxy, analysis)
    was_training = proxy.training
    proxy.eval()
    try:
        handle.set(gates)
        for _ in range(batches):
            idx = distributed.shard(next(stream))
            loss = loss_fn(batch_outputs(proxy, dataset, idx, device), idx)
            grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
            grads = distributed.mean_tensors(grads, gates.values()) if distributed.active() else grads
            for gid, grad in zip(gates, grads, strict=True):
                if grad is not None:
                    totals[gid] += grad.detach().double().cpu().numpy() ** 2
    finally:
        handle.remove()
        proxy.train(was_training)
    return finish_scores(analysis, totals, normalise=True)


def run_darp(proxy: ProxyModel, analysis: ChannelAnalysis, cost_model, budget, dataset: Dataset, loss_fn: LossFn,
             config, device: torch.device | str = "cpu", on_step=None, deadline: float | None = None):
    """The DARP search as `prune` runs it: with `config.init == "taylor"`, a share of the steps (at most
    8, a quarter) estimates Taylor importance to start the logits from; with `config.batchnorm`, the
    weights train with BatchNorm re-inserted (folded back before returning) and, on real data, the graph's
    own BatchNormalization nodes on batch statistics. In a dense model that BatchNorm
    does not normalise (transformers), one forward pass per residual branch measures what switching it off
    costs (`branch_ablation`, when that fits in a quarter of the steps left), and the search decides the
    branches by it. Elsewhere the relaxed gates decide them as before: the normalised CNNs recover from a
    dropped block that ablation rates as costly (ResNet sample at 15% MACs: 0.994+-0.006 as before, 0.979
    deciding by ablation; docs/results.md); unnormalised CNNs were not measured. `config.steps` in all."""
    from dataclasses import replace

    from darp_onnx.search.darp import darp_search
    from darp_onnx.training.batchnorm import insert_batchnorm

    init_scores = None
    all_steps = config.steps
    if config.init == "taylor":
        batches = min(TAYLOR_BATCHES, config.steps // 4)
        if batches > 0:
            init_scores = taylor_scores(proxy, analysis, dataset, loss_fn, batches=batches,
                                        batch_size=config.batch_size, seed=config.seed, device=device)
            config = replace(config, steps=config.steps - batches)
    handle = insert_batchnorm(proxy, dataset, seed=config.seed, device=device,
                              training_batch=min(config.batch_size, len(dataset))) if config.batchnorm else None
    if handle is not None:
        handle.train_graph_batchnorm(dataset)
    normalised = handle is not None and handle.normalises_most()
    try:
        branch_losses = {}
        ablation = ablation_steps(analysis)
        if config.init == "taylor" and not normalised and mostly_dense(proxy) and 0 < ablation <= config.steps // 4:
            branch_losses = _measure_branches(proxy, analysis, dataset, loss_fn, config, handle, device)
            config = replace(config, steps=config.steps - ablation)
        offset = all_steps - config.steps  # Taylor batches and branch ablations count as steps (the plan's)
        counted = None if on_step is None else (lambda record: on_step({**record, "step": record["step"] + offset}))
        return darp_search(proxy, analysis, cost_model, budget, dataset, loss_fn, config, device=device,
                           on_step=counted, init_scores=init_scores, deadline=deadline, branch_losses=branch_losses,
                           extra_parameters=None if handle is None else handle.parameters(), batchnorm=normalised)
    finally:
        if handle is not None:
            handle.recalibrate(dataset, seed=config.seed, device=device, training_batch=config.batch_size)
            proxy.eval()
            handle.fold()


def _measure_branches(proxy, analysis, dataset, loss_fn, config, handle, device) -> dict[int, float]:
    """`branch_ablation_scores` as the search trains: training mode, inserted BatchNorm statistics held."""
    proxy.train()
    with handle.held_statistics() if handle is not None else nullcontext():
        return branch_ablation_scores(proxy, analysis, dataset, loss_fn, batch_size=config.batch_size,
                                      seed=config.seed, device=device)
