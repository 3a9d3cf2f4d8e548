"""Recovery after pruning: BatchNorm re-inserted, re-estimated, then a short fine-tune, folded back.

The order matters (measured in docs/results.md, "Recovery"): BatchNorm initialised from the original
model's statistics, adaptive re-estimation of its running statistics on the pruned model, training
with batch statistics (SGD with momentum and a cosine schedule by default) on the label loss mixed
with distillation from the original model's outputs, a final re-estimation, and the fold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from darp_onnx.proxy import ProxyModel
from darp_onnx.search.loss import (
    finite_variance,
    is_probabilities,
    log_probabilities,
    output_loss,
    per_sample,
)
from darp_onnx.training.batchnorm import BatchNormHandle, insert_batchnorm
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.steps import (
    StepLosses,
    make_weight_optimizer,
    mostly_dense,
    run_steps,
    trainable_parameters,
    weight_optimizer,
)

SCHEDULES = ("cosine", "onecycle", "constant")


@dataclass(frozen=True)
class RecoveryRecipe:
    steps: int
    lr: float | None = None  # None: the optimizer's (training.steps.default_lr)
    optimizer: str | None = None  # None: by the model (training.steps.weight_optimizer): SGD, Adam for dense models
    schedule: str = "cosine"
    warmup: float = 0.1  # share of the steps with a linear warm-up
    momentum: float = 0.9
    weight_decay: float = 0.0
    batchnorm: bool = True  # re-insert BatchNorm after foldable convolutions while training
    adaptive_bn: bool = True  # re-estimate its statistics on the pruned model before and after training
    distill: float = 0.5  # weight of the distillation term when there are labels (0: labels only)
    temperature: float = 2.0
    batch_size: int = 32
    seed: int = 0

    def optimizer_with(self, batchnorm: bool, dense: bool = False) -> tuple[str, float]:
        """(optimizer, learning rate) when BatchNorm does (or does not) normalise most of the layers trained,
        in a mostly dense model or not; what the recipe names wins over the model's default."""
        return weight_optimizer(batchnorm, dense, self.optimizer, self.lr)


def lr_factor(schedule: str, step: int, steps: int, warmup: float) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then the schedule."""
    warm = max(int(steps * warmup), 1)
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    progress = (step - warm) / max(steps - warm, 1)
    if schedule == "onecycle":  # linear decay to zero after the warm-up peak
        return max(1.0 - progress, 0.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class RecoveryLoss:
    """Cross-entropy on labels mixed with KL distillation from the teacher's class scores (weight
    `distill`, at `temperature`); without labels, the teacher alone (KL, or scaled MSE for outputs that
    are not class scores)."""

    def __init__(self, labels: np.ndarray | None, teacher: Sequence[np.ndarray], distill: float,
                 temperature: float, logits_of: Mapping[int, int] | None = None) -> None:
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.teacher = [torch.from_numpy(np.asarray(t, np.float32)) for t in teacher]
        self.scales = [finite_variance(t) for t in self.teacher]
        self.distill = distill if labels is not None else 1.0
        self.temperature = temperature
        self.probabilities = [is_probabilities(t) for t in teacher]
        self.logits_of = dict(logits_of or {})  # a Softmax output's index -> its logits', matched in its place

    def __call__(self, outputs: Sequence[torch.Tensor], indices: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(np.asarray(indices))
        outputs = [per_sample(out) for out in outputs]
        first = self.logits_of.get(0, 0)
        total = outputs[0].new_zeros(())
        if self.labels is not None and self.distill < 1.0:
            total = total + (1.0 - self.distill) * F.nll_loss(
                log_probabilities(outputs[first], self.probabilities[first]), self.labels[idx].to(total.device))
        if self.distill > 0:
            total = total + self.distill * self._teacher_term(outputs, idx)
        return total

    def _teacher_term(self, outputs, idx) -> torch.Tensor:
        heads = [self.logits_of.get(0, 0)] if self.labels is not None else [
            i for i in range(min(len(outputs), len(self.teacher))) if i not in self.logits_of]
        term = outputs[0].new_zeros(())
        for i in heads:
            term = term + output_loss(outputs[i], self.teacher[i][idx], self.scales[i], self.probabilities[i],
                                      self.temperature)
        return term / len(heads)


def make_optimizer(params: list[torch.nn.Parameter], config: RecoveryRecipe, batchnorm: bool = True,
                   dense: bool = False) -> torch.optim.Optimizer:
    name, lr = config.optimizer_with(batchnorm, dense)
    return make_weight_optimizer(params, name, lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                 clip=not batchnorm)


def recover(
    proxy: ProxyModel,
    dataset: Dataset,
    teacher: Sequence[np.ndarray],
    config: RecoveryRecipe,
    *,
    set_pruned: Callable[[], None] | None = None,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    deadline: float | None = None,
    logits_of: Mapping[int, int] | None = None,
) -> list[float]:
    """Fine-tune the (gated) proxy; returns the losses, one per step run (fewer than `config.steps` where the
    `deadline`, a `time.perf_counter()` value, came first or the loss diverged). `set_pruned` puts the
    pruning masks on: with BatchNorm, the proxy must be unpruned while the layers are initialised, so pass
    the proxy with its gates cleared and the masks in `set_pruned`. The proxy ends in eval mode with
    BatchNorm folded back, computing exactly what the rewritten graph will compute. `logits_of`: a Softmax
    output's index -> the index of its logits (an added output), trained on in its place."""
    torch.manual_seed(config.seed)
    handle: BatchNormHandle | None = None
    if config.batchnorm:
        handle = insert_batchnorm(proxy, dataset, seed=config.seed, device=device,
                                  training_batch=min(config.batch_size, len(dataset)))
        handle.train_graph_batchnorm(dataset)
    if set_pruned is not None:
        set_pruned()
    try:
        if handle is not None and config.adaptive_bn:
            handle.recalibrate(dataset, seed=config.seed, device=device, training_batch=config.batch_size)
        loss_fn = RecoveryLoss(dataset.labels, teacher, config.distill, config.temperature, logits_of)
        losses = _train(proxy, dataset, loss_fn, config, handle, device, on_step, deadline)
        if handle is not None and config.adaptive_bn and config.steps > 0:
            handle.recalibrate(dataset, seed=config.seed + 1, device=device, training_batch=config.batch_size)
    finally:
        proxy.eval()
        if handle is not None:
            handle.fold()
        proxy.round_to_stored()
    return losses


def _train(proxy, dataset, loss_fn, config, handle, device, on_step, deadline) -> list[float]:
    if config.steps <= 0:
        return StepLosses()
    params = trainable_parameters(proxy) + ([] if handle is None else handle.parameters())
    optimizer = make_optimizer(params, config, handle is not None and handle.normalises_most(), mostly_dense(proxy))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, config.steps, config.warmup))
    return run_steps(proxy, dataset, loss_fn, optimizer, schedule, params, steps=config.steps,
                     batch_size=config.batch_size, seed=config.seed, device=device, on_step=on_step,
                     deadline=deadline, lower_on_early_rise=True)
