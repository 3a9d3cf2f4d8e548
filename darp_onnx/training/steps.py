"""Training the proxy's weights: batches, teacher outputs, a plain training loop, accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch

from darp_onnx.proxy import ProxyModel
from darp_onnx.runtime import distributed
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.schedule_clock import ScheduleClock

# The weights' optimiser (search and recovery). SGD with Nesterov momentum at 0.03 where BatchNorm is
# re-inserted after (most of) the convolutions (exported CNNs). Where there is none to re-insert:
# - dense models (most weighted layers MatMul/Gemm: transformers, with LayerNorm): Adam at 1e-3, what such
#   models are trained with. SGD at 0.03 wrecked the ViT sample (0.26-0.46 test accuracy at 50% MACs, 40
#   steps) and at 1e-3 recovered too slowly at small budgets (ViT at 15%: 0.45+-0.32; Adam: 0.83);
# - convolutional ones (BatchNormalization left in the graph runs on its fixed statistics): SGD at 1e-3, as
#   before; Adam at 1e-3 on an unnormalised CNN is what left the folded ResNet at constant outputs (issue 15),
#   and on the Paddle classifiers of the corpus it doubled the data-free output error.
# (docs/results.md, "Transformers recover with Adam".)
SGD_LR = 0.03
UNNORMALISED_SGD_LR = 1e-3
ADAM_LR = 1e-3
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def default_lr(name: str, batchnorm: bool) -> float:
    if name == "adam":
        return ADAM_LR
    return SGD_LR if batchnorm else UNNORMALISED_SGD_LR


def weight_optimizer(batchnorm: bool, dense: bool, name: str | None = None, lr: float | None = None
                     ) -> tuple[str, float]:
    """(optimizer, learning rate) for weights that train with (or without) BatchNorm normalising most of
    their layers, in a model whose weighted layers are mostly dense (MatMul/Gemm) or not; a `name` or `lr`
    given (the user's) wins over the default."""
    name = name or ("adam" if dense and not batchnorm else "sgd")
    return name, default_lr(name, batchnorm) if lr is None else lr


# Where nothing normalises the layers, SGD's steps are clipped: each weight moves by at most this share of
# its norm per step (learning rate x gradient norm; a trust ratio, as LARS). The Paddle classifiers of the
# corpus move by under 5e-4; a tf2onnx BlazeFace (fixed batch 1, data-free) had a first-step gradient of
# 4,806 on a 1x1 convolution of norm 1.1: at SGD's 1e-3 the step was 4x the weight, the outputs reached
# 1e5 and NaN a step later. Capped at 0.01 it prunes (0.05 still overflowed; docs/results.md, stop 25).
MAX_RELATIVE_STEP = 0.01
_NORM_FLOOR = 1e-3  # a zero bias may still move


@torch.no_grad()
def clip_relative_steps(optimizer: torch.optim.Optimizer, max_step: float = MAX_RELATIVE_STEP) -> None:
    """Scale each gradient down so that learning rate x its norm is at most `max_step` x its weight's norm."""
    for group in optimizer.param_groups:
        pairs = [(p, p.grad) for p in group["params"] if p.grad is not None]
        if not pairs or group["lr"] <= 0:
            continue
        weight_norms = torch._foreach_norm([p for p, _ in pairs])
        grad_norms = torch._foreach_norm([g for _, g in pairs])
        for (_, grad), weight_norm, grad_norm in zip(pairs, weight_norms, grad_norms, strict=True):
            limit = max_step * weight_norm.clamp_min(_NORM_FLOOR) / group["lr"]
            grad.mul_((limit / grad_norm.clamp_min(1e-30)).clamp(max=1.0))


def make_weight_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, *, momentum: float = 0.9,
                          weight_decay: float = 0.0, clip: bool = False) -> torch.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum; `clip` (SGD on layers nothing normalises): steps clipped by
    `clip_relative_steps`. Adam's steps are about its learning rate whatever the gradient's size."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if clip:
        start_clipping(optimizer)
    return optimizer


def start_clipping(optimizer: torch.optim.Optimizer) -> None:
    """SGD's steps clipped by `clip_relative_steps` from now on."""
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: clip_relative_steps(opt))
    optimizer.darp_clipped = True


# A batch loss this many times the first one (and above the floor: relative output errors of 1 are a
# sub-network that outputs nothing, not a divergence) means the weights are blowing up. DNSMOS (a tf2onnx
# speech-quality CNN, data-free): re-inserted BatchNorm normalised its convolutions, so SGD ran at 0.03
# unclipped, and its dense layers, which nothing normalises, took the search loss from 5.6 to 3e7 in one
# step and to 6e23 three steps later (docs/results.md, stop 27).
DIVERGED_FACTOR = 1e3
DIVERGED_FLOOR = 1.0


class DivergenceGuard:
    """Watches one training loop's batch losses. `diverged(loss)`: the loss is not finite, or far above
    the first one. The loop then undoes the last weight step and asks `go_on()`: unclipped SGD goes on
    with its steps clipped and its momentum cleared; anything else stops."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.first: float | None = None

    def diverged(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.first is None:
            self.first = loss
        return loss > DIVERGED_FACTOR * max(self.first, DIVERGED_FLOOR)

    def capped(self) -> bool:
        """Every step is capped (`clip_relative_steps`): the learning rate no longer sets how far a weight moves."""
        return isinstance(self.optimizer, torch.optim.SGD) and getattr(self.optimizer, "darp_clipped", False)

    def go_on(self) -> bool:
        if not isinstance(self.optimizer, torch.optim.SGD) or self.capped():
            return False
        self.optimizer.state.clear()
        start_clipping(self.optimizer)
        return True


class StepLosses(list):
    """The losses of the steps run; `diverged_capped`: the loop stopped on a divergence although every step was
    capped (swift-f0's pitch tracker: a 30x lower --lr gave the same losses, so 'a lower --lr' was no advice);
    `lowered`: the learning rates it started again at (`EarlyRise`); `diverged`: a divergence stopped it (not the
    clock: a fine-tune that ran 100 of 101 steps as its schedule followed the clock was said to diverge)."""

    diverged_capped = False
    diverged = False

    def __init__(self, losses: Iterable[float] = ()) -> None:
        super().__init__(losses)
        self.lowered: list[float] = []

    def ran(self) -> int:
        """The steps run: those with a loss, and those that found the loss soaring (no weight step)."""
        return len(self) + len(self.lowered)


# A batch loss this many times the first one within a fine-tune's first steps: its learning rate is far too
# large for the model. PESTO's pitch network (logits of spread 380) went from 0.056 to 4.9 and 437 in two SGD
# steps at 0.03 (and at 1e-3), to 0.003 at 1e-4 and 3e-4; the guard below (1000x) stopped it at its last step,
# and the fine-tune, worse than none, was dropped. Within EARLY_STEPS (or a fifth of the steps, if more) the
# loop starts again from its first weights at a tenth of the rate, at most LOWERINGS times.
EARLY_RISE = 10.0
EARLY_FLOOR = 0.01  # a first loss near 0 (a model barely pruned) is taken as this: noise is not a rise
EARLY_STEPS = 3
LOWERINGS = 2


def lowered_note(rates: list[float]) -> str:
    """What a fine-tune started again at lower rates says."""
    steps = " then ".join(f"{r:.3g}" for r in rates)
    return (f"the fine-tune's loss soared in its first steps: started again from the pruned weights at learning rate "
            f"{steps} (--lr sets it)")


class EarlyRise:
    """Restarts of one loop at a lower learning rate (see EARLY_RISE): `rose(loss, count)`, then `restart()`."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule, params: list[torch.nn.Parameter],
                 steps: int) -> None:
        self.optimizer, self.schedule = optimizer, schedule
        self.window = max(EARLY_STEPS, steps // 5)
        self.start = [p.detach().clone() for p in params]
        self.params = params
        self.first: float | None = None
        self.started_at = 0  # the step the current attempt began at
        self.lowered: list[float] = []

    def rose(self, loss: float, count: int) -> bool:
        if self.first is None:
            self.first = loss
            return False
        early = count - self.started_at < self.window
        return early and len(self.lowered) < LOWERINGS and math.isfinite(self.first) and \
            not loss <= EARLY_RISE * max(self.first, EARLY_FLOOR)

    @torch.no_grad()
    def restart(self, count: int) -> float:
        """Back to the first weights, momentum cleared, every rate a tenth; the new base rate."""
        restore_weights(self.params, self.start)
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.1
        self.schedule.base_lrs = [lr * 0.1 for lr in self.schedule.base_lrs]
        self.first, self.started_at = None, count
        self.lowered.append(self.schedule.base_lrs[0])
        return self.lowered[-1]


def weighted_steps(proxy: ProxyModel) -> list:
    """The proxy's Conv/Gemm/MatMul steps whose weight (second input) is a parameter of the model."""
    return [s for s in proxy.steps if s.op_type in WEIGHTED_OPS
            and any(proxy.parameter_key(name) is not None for name in s.inputs[1:2] if name)]


def mostly_dense(proxy: ProxyModel) -> bool:
    """More MatMul/Gemm layers with weights than convolutions: a transformer or MLP, not a CNN."""
    kinds = [s.op_type in ("Gemm", "MatMul") for s in weighted_steps(proxy)]
    return sum(kinds) > len(kinds) - sum(kinds)


# BatchNormalization inputs 3 and 4 are running statistics: fixed numbers, not weights to train.
_STATISTIC_INPUTS = {"BatchNormalization": (3, 4)}


def trainable_parameters(proxy: ProxyModel) -> list[torch.nn.Parameter]:
    frozen: set[str] = set()
    for step in proxy.steps:
        for pos in _STATISTIC_INPUTS.get(step.op_type, ()):
            if pos < len(step.inputs) and step.inputs[pos]:
                frozen.add(step.inputs[pos])
    keys = {proxy.parameter_key(name) for name in frozen} - {None}
    return [p for k, p in proxy.weights.items() if k not in keys]


def batch_inputs(dataset: Dataset, indices: np.ndarray, device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v[indices])).to(device) for k, v in dataset.inputs.items()}


def as_tuple(outputs) -> tuple[torch.Tensor, ...]:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def batch_outputs(proxy: ProxyModel, dataset: Dataset, indices: np.ndarray,
                  device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """The proxy's outputs for the samples `indices`. For a data set in micro-batches (a model that is
    not batch-major) every sample runs alone and the outputs are stacked along a new first axis: the
    loss over the stack is the mean of the per-sample losses, so one backward accumulates their
    gradients."""
    if not dataset.micro_batches:
        return as_tuple(proxy(**batch_inputs(dataset, indices, device)))
    runs = [as_tuple(proxy(**dataset.feed(int(i), device))) for i in indices]
    return tuple(torch.stack([run[j] for run in runs]) for j in range(len(runs[0])))


# Batches of a pass over the data (outputs only, no gradients). On a CPU the per-sample cost grows with the
# batch once the activations leave the caches: PP-OCRv5's recogniser at 48x320 took 79 ms a sample at batch 8
# and 330 at 128, a 224x224 classifier 23 and 82; the smallest model of the corpus (ppocr_cls) is flat. The
# budget's passes over the data ran 2.4x slower than the plan's probe at batch 8 had measured, and the re-plan
# cut the fine-tune from 41 to 5 steps (benchmarks/pass_batch.py). A GPU wants large batches.
CPU_PASS_BATCH = 8
GPU_PASS_BATCH = 128


def pass_batch(device: torch.device | str) -> int:
    """The batch of a pass over the data on `device`."""
    return GPU_PASS_BATCH if str(device).startswith("cuda") else CPU_PASS_BATCH


@torch.no_grad()
def predict(proxy: ProxyModel, dataset: Dataset, *, batch_size: int | None = None,
            device: torch.device | str = "cpu") -> list[np.ndarray]:
    """All outputs of the proxy over the data set, in sample order (in batches of `pass_batch` unless given)."""
    batch_size = pass_batch(device) if batch_size is None else batch_size
    parts: list[list[np.ndarray]] = []
    if dataset.micro_batches:
        for i in range(len(dataset)):
            outs = proxy.run(dataset.feed(i, device))
            parts.append([outs[name].float().cpu().numpy()[None] for name in proxy.output_names])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(proxy.output_names))]
    for start in range(0, len(dataset), batch_size):
        idx = np.arange(start, min(start + batch_size, len(dataset)))
        outs = proxy.run(batch_inputs(dataset, idx, device))
        parts.append([outs[name].float().cpu().numpy() for name in proxy.output_names])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(proxy.output_names))]


def accuracy(proxy: ProxyModel, dataset: Dataset, *, device: torch.device | str = "cpu") -> float:
    if dataset.labels is None:
        raise ValueError("accuracy needs labels")
    logits = predict(proxy, dataset, device=device)[0]
    return float((logits.argmax(axis=1) == dataset.labels).mean())


def warmup_schedule(optimizer: torch.optim.Optimizer, steps: int, share: float = 0.1):
    """Linear learning-rate warm-up over the first `share` of the steps. Adam's first steps move
    every weight by about the full learning rate whatever its gradient, which wrecks a converged
    model whose weights are small (BatchNorm folded into convolutions); warming up avoids that."""
    warm = max(int(steps * share), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warm))


@torch.no_grad()
def restore_weights(params: list[torch.nn.Parameter], saved: list[torch.Tensor] | None) -> None:
    for param, value in zip(params, saved or [], strict=False):
        param.copy_(value)


def run_steps(
    proxy: ProxyModel,
    dataset: Dataset,
    loss_fn: Callable[[tuple[torch.Tensor, ...], np.ndarray], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    params: list[torch.nn.Parameter],
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    deadline: float | None = None,
    lower_on_early_rise: bool = False,
) -> list[float]:
    """The training loop every fine-tune shares: `steps` batches of `batch_size` (per rank under torchrun:
    one global batch drawn alike everywhere, each rank its share, gradients averaged), one optimiser and
    schedule step each; returns the losses (averaged over ranks). Ends in eval mode. With a `deadline`
    (a `time.perf_counter()` value) the schedule follows the clock (`ScheduleClock`) and the loop ends
    when its position reaches `steps`: fewer steps when they run slower than planned. `lower_on_early_rise`:
    start again at a lower rate where the loss soars in the first steps (`EarlyRise`; the steps run count)."""
    batches = dataset.batches(min(batch_size * distributed.world_size(), len(dataset)), np.random.default_rng(seed))
    losses = StepLosses()
    proxy.train()
    last_good: list[torch.Tensor] | None = None
    clock = ScheduleClock(steps, deadline)
    guard = DivergenceGuard(optimizer)
    rise = EarlyRise(optimizer, schedule, params, steps) if lower_on_early_rise else None
    for count in range(steps):
        step = _agreed(clock.position(count), deadline)
        if step >= steps:
            break
        idx = distributed.shard(next(batches))
        loss = loss_fn(batch_outputs(proxy, dataset, idx, device), idx)
        value = distributed.mean_scalar(float(loss.detach()))
        if rise is not None and rise.rose(value, count):  # the step is spent on finding it out
            losses.lowered.append(rise.restart(count))
            guard = DivergenceGuard(optimizer)
            continue
        if guard.diverged(value):
            restore_weights(params, last_good)  # the last step blew the weights up: undo it
            if guard.go_on():
                continue
            losses.diverged, losses.diverged_capped = True, guard.capped()
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params)
        last_good = [p.detach().clone() for p in params]
        optimizer.step()
        while schedule.last_epoch <= step:  # one step, or more where the clock ran ahead
            schedule.step()
        losses.append(distributed.mean_scalar(float(loss.detach())))
        if on_step is not None:
            on_step(step, losses[-1])
    proxy.eval()
    return losses


def _agreed(position: int, deadline: float | None) -> int:
    """The furthest clock position over the ranks (every rank must stop at the same step)."""
    return position if deadline is None else distributed.max_int(position)


def train_steps(
    proxy: ProxyModel,
    dataset: Dataset,
    loss_fn: Callable[[tuple[torch.Tensor, ...], np.ndarray], torch.Tensor],
    *,
    steps: int,
    lr: float,
    batch_size: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    parameters: Iterable[torch.nn.Parameter] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Adam on the given (default: trainable) parameters for `steps` batches; returns the losses."""
    params = list(parameters) if parameters is not None else trainable_parameters(proxy)
    optimizer = torch.optim.Adam(params, lr=lr)
    return run_steps(proxy, dataset, loss_fn, optimizer, warmup_schedule(optimizer, steps), params, steps=steps,
                     batch_size=batch_size, seed=seed, device=device, on_step=on_step)
