"""The fine-tuning loop: Adam with cross-entropy (on logits or probabilities), periodic validation, early
stopping, best weights kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from darp_onnx.proxy import ProxyModel
from darp_onnx.runtime import distributed
from darp_onnx.search.loss import is_probabilities, log_probabilities
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.steps import as_tuple, batch_inputs, predict, warmup_schedule


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    batch_size: int
    patience: int  # evaluations without a lower validation loss before stopping
    eval_every: int
    seed: int


@dataclass
class LoopResult:
    steps_run: int = 0
    best_step: int = 0
    stopped_early: bool = False
    train_losses: list[float] = field(default_factory=list)
    val_loss_initial: float | None = None
    val_loss_best: float | None = None
    val_accuracy_initial: float | None = None
    val_accuracy_best: float | None = None


def evaluate(proxy: ProxyModel, dataset: Dataset, device: str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the first output (logits or probabilities), in inference mode."""
    proxy.eval()
    scores = predict(proxy, dataset, device=device)[0]
    labels = torch.from_numpy(np.asarray(dataset.labels, dtype=np.int64))
    log_probs = log_probabilities(torch.from_numpy(scores).double(), is_probabilities(scores))
    loss = float(F.nll_loss(log_probs, labels))
    return loss, float((log_probs.argmax(1) == labels).double().mean())


def first_output_is_probabilities(proxy: ProxyModel, dataset: Dataset, device: str) -> bool:
    """Whether the model's first output is class probabilities (a Softmax), judged on a few samples."""
    proxy.eval()
    return is_probabilities(predict(proxy, dataset.limited(min(len(dataset), 16), 0), device=device)[0])


def _snapshot(proxy: ProxyModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in proxy.state_dict().items()}


def train_with_early_stopping(
    proxy: ProxyModel,
    train: Dataset,
    val: Dataset | None,
    params: list[torch.nn.Parameter],
    config: LoopConfig,
    *,
    device: str = "cpu",
    progress: Callable[[str, dict[str, float]], None] | None = None,
) -> LoopResult:
    """Train `params` on `train`; with `val`, leave the proxy holding the weights (and BatchNormalization
    running statistics) of the evaluation with the lowest validation loss, step 0 included."""
    say = progress or (lambda stage, info: None)
    result = LoopResult()
    best_state = None
    say("start", {"steps": config.steps, "train_samples": len(train),
                     "val_samples": 0 if val is None else len(val)})
    if val is not None:
        loss, acc = evaluate(proxy, val, device)
        result.val_loss_initial = result.val_loss_best = loss
        result.val_accuracy_initial = result.val_accuracy_best = acc
        best_state = _snapshot(proxy)
        say("eval", {"step": 0, "val_loss": loss, "val_accuracy": acc, "best": 1.0})
    if config.steps == 0 or not params:
        return result
    optimizer = torch.optim.Adam(params, lr=config.lr)
    schedule = warmup_schedule(optimizer, config.steps)
    # under torchrun: one global batch of batch_size per rank, drawn alike everywhere, each rank its share
    batches = train.batches(config.batch_size * distributed.world_size(), np.random.default_rng(config.seed))
    labels = torch.from_numpy(np.asarray(train.labels, dtype=np.int64))
    probabilities = first_output_is_probabilities(proxy, train, device)
    since_best = 0
    for step in range(1, config.steps + 1):
        proxy.train()
        idx = distributed.shard(next(batches))
        logits = as_tuple(proxy(**batch_inputs(train, idx, device)))[0]
        loss = F.nll_loss(log_probabilities(logits, probabilities), labels[torch.from_numpy(idx)].to(logits.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params)
        optimizer.step()
        schedule.step()
        result.train_losses.append(distributed.mean_scalar(float(loss.detach())))
        result.steps_run = step
        say("train", {"step": step, "loss": result.train_losses[-1]})
        if val is None or (step % config.eval_every and step != config.steps):
            continue
        val_loss, acc = evaluate(proxy, val, device)
        improved = val_loss < result.val_loss_best
        if improved:
            result.val_loss_best, result.val_accuracy_best, result.best_step = val_loss, acc, step
            best_state = _snapshot(proxy)
            since_best = 0
        else:
            since_best += 1
        say("eval", {"step": step, "val_loss": val_loss, "val_accuracy": acc, "best": float(improved)})
        if since_best >= config.patience:
            result.stopped_early = step < config.steps
            break
    proxy.eval()
    if best_state is not None:
        proxy.load_state_dict(best_state)
    else:
        result.best_step = result.steps_run
    return result
