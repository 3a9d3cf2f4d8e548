"""Branch importance by ablation: how much the loss rises when one residual branch is switched off.

A residual branch is one all-or-nothing unit. The relaxed gate's gradient only sees the loss near the
gate's current value, not what removing the whole branch does: on the ViT sample the search dropped the
first attention branch in 2 of 5 seeds, and the model never recovered (0.20 and 0.56 test accuracy at 25%
MACs), though switching it off alone takes the training loss from 0.01 to 2.2-2.4 (docs/results.md,
"Transformers recover with Adam; residual branches decided by ablation"). Switching each branch off in
turn measures it: one forward pass per branch on one batch, without gradients (about a third of a
training step each, counted as search steps).

The passes run as the search trains: with the re-inserted BatchNorm on batch statistics (held, not
updated). That matters: re-normalised, removing a block of the ResNet sample costs 0.04-1.5, not 1.2-7.8,
and the search may drop it and recover, as it did before.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from darp_onnx.groups import ChannelAnalysis
from darp_onnx.proxy import ProxyModel
from darp_onnx.runtime import distributed
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.loss import LossFn
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.steps import batch_outputs

FORWARDS_PER_STEP = 3  # a forward pass without gradients costs about a third of a training step


def ablation_steps(analysis: ChannelAnalysis) -> int:
    """Training-step equivalents `branch_ablation_scores` costs (0: the model has no prunable branch)."""
    branches = sum(1 for g in analysis.prunable() if g.kind == "branch")
    return math.ceil((branches + 1) / FORWARDS_PER_STEP) if branches else 0


@torch.no_grad()
def branch_ablation_scores(proxy: ProxyModel, analysis: ChannelAnalysis, dataset: Dataset, loss_fn: LossFn, *,
                           batch_size: int = 32, seed: int = 0,
                           device: torch.device | str = "cpu") -> dict[int, float]:
    """Per prunable branch group: loss with the branch off minus loss with every unit on, on one batch,
    in the proxy's current mode (train mode: BatchNorm on batch statistics; hold its running ones)."""
    branches = [g for g in analysis.prunable() if g.kind == "branch"]
    if not branches:
        return {}
    size = min(batch_size * distributed.world_size(), len(dataset))
    idx = distributed.shard(np.random.default_rng(seed).choice(len(dataset), size=size, replace=False))
    handle = attach_gates(proxy, analysis)
    try:
        losses = []
        for off in [None, *branches]:
            handle.set({} if off is None else {off.id: torch.zeros(1, device=device)})
            losses.append(loss_fn(batch_outputs(proxy, dataset, idx, device), idx).detach().float().reshape(1))
    finally:
        handle.remove()
    values = torch.cat(losses)
    if distributed.active():
        values = distributed.mean_tensors([values], [values])[0]
    rises = (values[1:] - values[0]).double().cpu().tolist()
    return {g.id: rise for g, rise in zip(branches, rises, strict=True)}
