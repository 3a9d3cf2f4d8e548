"""The DARP gate search: weight and logit updates under an expected-cost penalty.

Every step samples an architecture at the sampling temperature and takes one backward pass of the
relaxed objective `loss + lambda * E_pi[cost] / cost_full`; by default (`joint`) it updates both the
logits (Adam) and the weights (SGD with momentum, the recovery's optimiser), so every search step is
also a training step of the sub-networks the search is converging to: at a small budget of steps the
search no longer takes steps away from the recovery (docs/results.md, "A search that wins"). With
`joint` off, steps alternate as in the paper: weights on one split of the data, logits on the other.
Both temperatures anneal; lambda follows dual ascent so the expected cost meets the budget. One search
step is one forward/backward pass, so a step costs about one plain training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from darp_onnx.cost import CostModel
from darp_onnx.groups import ChannelAnalysis
from darp_onnx.proxy import ProxyModel
from darp_onnx.runtime import distributed
from darp_onnx.search.budget import Budget
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.relax import keep_probabilities, sample_gates
from darp_onnx.search.schedule import temperature
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.schedule_clock import ScheduleClock
from darp_onnx.training.steps import (
    DivergenceGuard,
    batch_outputs,
    make_weight_optimizer,
    mostly_dense,
    restore_weights,
    trainable_parameters,
    warmup_schedule,
    weight_optimizer,
)


@dataclass(frozen=True)
class DarpConfig:
    steps: int = 200
    batch_size: int = 32
    lr_weights: float | None = None  # None: the optimizer's (training.steps.default_lr)
    weight_optimizer: str | None = None  # "sgd" (Nesterov momentum 0.9), "adam"; None: training.steps.weight_optimizer
    lr_logits: float = 0.1  # at least LOGIT_TRAVEL / steps: a short search must still move the logits
    tau_sample: tuple[float, float] = (0.5, 0.1)
    tau_penalty: tuple[float, float] = (1.0, 0.2)
    schedule: str = "geometric"
    hard: bool = False
    init_logit: float = 3.0
    penalty_init: float = 1.0
    penalty_lr: float = 1.0
    logit_every: int = 2  # one step in this many updates the logits, the others the weights
    joint: bool = True  # every step updates the weights and the logits from one backward pass (one data split)
    target_ramp: float = 0.6  # the penalised target moves from the full cost to the budget over this share
    seed: int = 0
    init: str = "taylor"  # initial logits: "constant" (init_logit) or spread by Taylor importance rank
    init_spread: float = 2.0  # with "taylor": logits from init_logit - spread (least) to + spread (most important)
    batchnorm: bool = True  # train the weights with BatchNorm re-inserted after each foldable Conv


@dataclass
class SearchResult:
    scores: dict[int, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0  # steps not run because the deadline came first or the loss diverged
    diverged: bool = False  # stopped on a diverging loss (`DivergenceGuard`), the weights before it kept


StepCallback = Callable[[dict[str, float]], None]

PENALTY_RANGE = (1e-3, 1e2)
# Adam moves a logit by about its learning rate per logit step; over a search it must be able to cross
# the initial spread (measured: a 15-step search at lr 0.1 left the Taylor-ranked start almost unchanged
# and lost 2-5 points at 15% MACs on mobilenetv3 against lr 1.0)
LOGIT_TRAVEL = 15.0


def ramped_target(target: float, step: int, steps: int, ramp: float) -> float:
    """Gradual pruning: the cost the penalty aims at falls linearly from 1 (the full model) to the
    budget over the first `ramp` share of the steps, so the dual variable never faces a large gap."""
    if ramp <= 0:
        return target
    progress = min(step / max(ramp * steps, 1.0), 1.0)
    return 1.0 + (target - 1.0) * progress


def update_penalty(penalty: float, expected: float, target: float, rate: float) -> float:
    """Dual ascent on lambda in log space: grow while the expected cost is over budget, shrink while
    under, in proportion to the relative gap. Multiplicative steps react as fast to an undershoot as
    to an overshoot, which additive steps (slow to unwind a large lambda) do not."""
    gap = (expected - target) / max(target, 1e-12)
    return float(min(max(penalty * math.exp(rate * gap), PENALTY_RANGE[0]), PENALTY_RANGE[1]))


def initial_logits(groups, config: DarpConfig, scores: dict[int, np.ndarray] | None) -> dict[int, np.ndarray]:
    """A logit per unit: `init_logit`, shifted by the unit's importance rank within its group when
    scores are given (a data-aware start: the search then decides how wide each layer stays)."""
    logits = {}
    for group in groups:
        values = np.full(group.size, config.init_logit)
        score = None if scores is None else scores.get(group.id)
        if score is not None and group.size > 1 and np.all(np.isfinite(score)):
            ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable") / (group.size - 1)
            values = values + config.init_spread * (2.0 * ranks - 1.0)
        logits[group.id] = values
    return logits


def _branch_term(probs: dict[int, torch.Tensor], branch_losses: dict[int, float]) -> torch.Tensor | float:
    """-sum_b p_b * (L_off - L_on): its gradient in p_b is the exact derivative of the expected loss
    p_b * L_on + (1 - p_b) * L_off of a branch kept with probability p_b (search/branch_ablation.py).
    It counts only while the expected cost is over the goal, as the penalty does: under it the term
    alone pushed every branch up (the ViT sample at 50% MACs kept all 8: 0.960+-0.027 against
    0.978+-0.005), so a branch now goes when the penalty's price of its cost exceeds its loss."""
    terms = [probs[gid].sum() * float(rise) for gid, rise in branch_losses.items() if gid in probs]
    return -torch.stack(terms).sum() if terms else 0.0


def darp_search(
    proxy: ProxyModel,
    analysis: ChannelAnalysis,
    cost_model: CostModel,
    budget: Budget,
    dataset: Dataset,
    loss_fn: Callable[[tuple[torch.Tensor, ...], np.ndarray], torch.Tensor],
    config: DarpConfig,
    *,
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
    init_scores: dict[int, np.ndarray] | None = None,
    extra_parameters: list[torch.nn.Parameter] | None = None,
    deadline: float | None = None,
    batchnorm: bool | None = None,
    branch_losses: dict[int, float] | None = None,
) -> SearchResult:
    """`init_scores`: unit importance to start the logits from (see `initial_logits`);
    `branch_losses`: per residual branch group, the loss rise when it is switched off
    (`branch_ablation_scores`); those branches' logits then follow the expected loss of an on/off gate
    (`_branch_term`) instead of the relaxed sample's local gradient;
    `extra_parameters`: trained with the weights (inserted BatchNorm layers); `batchnorm`: BatchNorm
    normalises most layers (the optimizer, `training.steps.weight_optimizer`; None: extra parameters
    given); `deadline` (a `time.perf_counter()` value): when steps run slower than planned, the schedules
    advance with the time used instead of the step count, so the search anneals fully and ends in time
    (with fewer steps)."""
    torch.manual_seed(config.seed)
    branch_losses = branch_losses or {}
    clock = ScheduleClock(config.steps, deadline)
    generator = torch.Generator().manual_seed(config.seed)
    groups = analysis.prunable()
    start = initial_logits(groups, config, init_scores)
    theta = {g.id: torch.tensor(start[g.id], dtype=torch.float32, device=device, requires_grad=True)
             for g in groups}
    order = np.random.default_rng(config.seed).permutation(len(dataset))
    half = max(len(order) // 2, 1)
    weight_idx, logit_idx = order[:half], (order[half:] if len(order) > 1 else order)
    if config.joint:  # one update of both from the same batch: all the data
        weight_idx = logit_idx = order
    rng = np.random.default_rng(config.seed + 1)
    weights = trainable_parameters(proxy) + list(extra_parameters or [])
    normalised = bool(extra_parameters) if batchnorm is None else batchnorm
    opt_w = make_weight_optimizer(weights, *weight_optimizer(normalised, mostly_dense(proxy), config.weight_optimizer,
                                                             config.lr_weights), clip=not normalised)
    opt_t = torch.optim.Adam(list(theta.values()), lr=max(config.lr_logits, LOGIT_TRAVEL / max(config.steps, 1)),
                             betas=(0.5, 0.99))
    warmup = warmup_schedule(opt_w, config.steps if config.joint else config.steps - config.steps // config.logit_every)
    full = float(budget.full)
    target = budget.fraction

    penalty = config.penalty_init
    history: list[dict[str, float]] = []
    handle = attach_gates(proxy, analysis)
    proxy.train()
    last_good: list[torch.Tensor] | None = None
    guard = DivergenceGuard(opt_w)
    diverged = False
    try:
        for count in range(config.steps):
            step = clock.position(count)
            if step >= config.steps:
                break
            tau_s = temperature(config.schedule, *config.tau_sample, step, config.steps)
            tau_p = temperature(config.schedule, *config.tau_penalty, step, config.steps)
            logit_step = config.joint or count % config.logit_every == config.logit_every - 1
            pool = logit_idx if logit_step else weight_idx
            # one global batch (batch_size per rank) from the same stream on every rank; this rank's share
            size = min(config.batch_size * distributed.world_size(), len(pool))
            idx = distributed.shard(pool[rng.integers(0, len(pool), size=size)])
            gates = {
                gid: sample_gates(th if logit_step and gid not in branch_losses else th.detach(), tau_s,
                                  hard=config.hard, generator=generator)
                for gid, th in theta.items()
            }
            handle.set(gates)
            loss = loss_fn(batch_outputs(proxy, dataset, idx, device), idx)
            record = {"step": float(step), "loss": distributed.mean_scalar(float(loss.detach())),
                      "tau_sample": tau_s, "tau_penalty": tau_p, "penalty": penalty}
            if guard.diverged(record["loss"]):  # the last weight step blew the weights up: undo it, keep the logits
                restore_weights(weights, last_good)
                if guard.go_on():
                    continue
                diverged = True
                break
            if config.joint or not logit_step:  # this step updates the weights
                last_good = [w.detach().clone() for w in weights]
            if logit_step:
                probs = {gid: keep_probabilities(th, tau_p) for gid, th in theta.items()}
                cost = budget.expected(probs) / full
                goal = ramped_target(target, step, config.steps, config.target_ramp)
                # Lagrangian term of the constraint cost <= goal; no push once under it, so the
                # logits' momentum does not carry the cost far below the budget.
                objective = loss + penalty * torch.clamp(cost - goal, min=0.0)
                if float(cost.detach()) > goal:
                    objective = objective + _branch_term(probs, branch_losses)
                opt_t.zero_grad(set_to_none=True)
                opt_w.zero_grad(set_to_none=True)
                objective.backward()
                distributed.average_gradients(theta.values())
                opt_t.step()
                if config.joint:
                    distributed.average_gradients(weights)
                    opt_w.step()
                    warmup.step()
                penalty = update_penalty(penalty, float(cost.detach()), goal, config.penalty_lr)
                record["expected_cost"] = float(cost.detach())
                record["target"] = goal
            else:
                opt_w.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(weights)
                opt_w.step()
                warmup.step()
            history.append(record)
            if on_step is not None:
                on_step(record)
    finally:
        handle.remove()
        proxy.eval()
    return SearchResult({gid: th.detach().cpu().numpy() for gid, th in theta.items()}, history,
                        config.steps - len(history), diverged)
