"""BatchNorm re-inserted into a proxy whose convolutions had it folded in, for training only.

Exporters fold BatchNorm into the convolutions, so a pruned graph trains without normalisation: a
layer whose inputs lost most of their channels emits activations of the wrong scale and offset, and
a few hundred steps of plain fine-tuning do not repair that (the pruned model stays at chance). Here
every Conv whose weight and bias are the proxy's own parameters gets a per-channel BatchNorm on its
output, initialised from the statistics of the original model on the data (`gamma` = std,
`beta` = mean, running mean/var = the same), so the proxy starts out computing exactly what the graph
computes. After extraction `recalibrate` re-estimates the running statistics on the pruned model
(adaptive BatchNorm, as in EagleEye): every layer's output is put back to the original's mean and
scale. Training then sees batch statistics, as a framework user's fine-tune does, and `fold` writes
the normalisation back into the convolution's weight and bias, exactly (except where a channel varies
below float32's resolution at its mean, see `NormalisedConv.scale`), and removes the layers.

A model that runs in micro-batches (a fixed batch of 1) has no batch statistics: one sample's
statistics over its own positions leave out how samples differ, so a channel nearly constant within a
sample (silero's VAD encoder: mean 3000, in-sample std 0.1) got scaled up by 40 and its rounding noise
with it. There the statistics are moments over the samples (run side by side, so that each layer's
are taken after the layers before it are set, as in one batch), and training keeps them fixed.

Training batches of fewer than MIN_BATCH_STATISTICS samples keep them fixed too (as detectors fine-tuned at
two pictures a GPU freeze BatchNorm): the statistics of two or four pictures follow each picture's own
brightness and contrast, which the written model, on its running statistics, never sees. HED (a VGG edge
detector) trained at batch 4 lowered its batch loss while the loss of the folded model over the data rose
(0.78 -> 1.37), and the fine-tune was dropped; pruned to 50% with 72 real crops at batch 4, it kept an edge F1
of 0.35 against the original's edges, and 0.92 on fixed statistics (docs/results.md, stop 36). The running
statistics are still re-estimated on the pruned model (`recalibrate`), on batch statistics over passes of
`pass_batch` samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.proxy import ProxyModel
from darp_onnx.proxy.ops.normalization import BatchNormModule
from darp_onnx.runtime import distributed
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.graph_batchnorm import GraphBatchNorm, release, train_graph_batchnorm
from darp_onnx.training.steps import batch_outputs, pass_batch, weighted_steps

EPS = 1e-5
RECALIBRATION_SAMPLES = 512  # running statistics re-estimated over at most this many samples (8 batches of 64 before
# the passes ran at `pass_batch`: PP-OCRv4's recogniser took 117 ms a sample at batch 64, 33 at 8)
LOCKSTEP_SAMPLES = 64  # micro-batch statistics: at most this many samples run side by side
LOCKSTEP_PER_TRAINING_SAMPLE = 4  # ... and at most this many per sample of a training step (memory: a forward
#                                   without gradients holds each sample's live tensors only, not all of them)
RESOLVABLE = 1e-3  # the smallest std relative to the mean that the fold treats as signal
MIN_BATCH_STATISTICS = 8  # training batches below this size train on the running statistics


class NormalisedConv(nn.Module):
    """A proxy Conv step followed by BatchNorm over its output channels (axis 1)."""

    def __init__(self, conv: nn.Module, channels: int, *, batch_stats: bool = True) -> None:
        super().__init__()
        self.conv = conv
        self.batch_stats = batch_stats  # train on batch statistics (False: the running ones: micro or small batches)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum = 0.1
        self.collect: list[torch.Tensor] | None = None  # raw-output moments while calibrating (raw output passed on)
        self.initial: tuple[torch.Tensor, ...] | None = None  # the state that computes the plain Conv

    def forward(self, x, w, b=None):
        y = self.conv(x, w, b)
        if self.collect is not None:
            dims = [0, *range(2, y.dim())]
            self.collect.append(torch.stack([y.detach().mean(dims), (y.detach() ** 2).mean(dims)]))
            return y
        # one value per channel has no batch statistics
        batch_stats = self.training and self.batch_stats and y[:, 0].numel() > 1
        if batch_stats and distributed.active():  # under torchrun: the global batch's statistics
            return distributed.synced_batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias,
                                                 momentum=self.momentum, eps=EPS)
        return F.batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias,
                            training=batch_stats, momentum=self.momentum, eps=EPS)

    def normalised(self, y: torch.Tensor) -> torch.Tensor:
        """`y` (this layer's raw output) normalised as in eval mode."""
        return F.batch_norm(y, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=EPS)

    def start_collecting(self) -> None:
        self.collect = []

    def collected_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the raw output over what was collected (in double); stops collecting."""
        moments = torch.stack(self.collect).mean(0).double()
        self.collect = None
        return moments[0], (moments[1] - moments[0] ** 2).clamp_min(0.0)

    def set_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.running_mean.copy_(mean.float())
        self.running_var.copy_(var.float())

    def state(self) -> tuple[torch.Tensor, ...]:
        return tuple(t.detach().clone() for t in (self.weight, self.bias, self.running_mean, self.running_var))

    def is_identity(self) -> bool:
        """Unchanged since initialisation: folding would only add rounding, so it is skipped."""
        return self.initial is not None and all(torch.equal(a, b) for a, b in zip(self.state(), self.initial,
                                                                                   strict=True))

    def scale(self) -> torch.Tensor:
        """What the fold multiplies the Conv's output channels by. A variance below float32's resolution
        at the channel's mean (std < RESOLVABLE x |mean|) is rounding, not signal: floored there, so the
        fold does not scale rounding noise up into the written weights."""
        floor = (RESOLVABLE * self.running_mean) ** 2
        return self.weight.detach() / torch.sqrt(torch.maximum(self.running_var, floor) + EPS)


class BatchNormHandle:
    """The BatchNorm layers inserted into one proxy: `parameters`, `recalibrate`, `fold`."""

    def __init__(self, proxy: ProxyModel, layers: dict[int, NormalisedConv], small_batches: bool = False) -> None:
        self.proxy = proxy
        self.layers = layers
        self.small_batches = small_batches  # training batches below MIN_BATCH_STATISTICS: fixed statistics
        self.graph_layers: list[GraphBatchNorm] = []  # the graph's own BatchNormalization nodes, when trained

    def train_graph_batchnorm(self, dataset: Dataset) -> None:
        """The graph's BatchNormalization nodes train on batch statistics too (`training.graph_batchnorm`),
        where there are batches of real samples. One sample has no batch statistics; synthetic feeds have
        statistics unlike the data's, and the stored ones are all the model knows of its data (data-free,
        the OCR direction classifier of PaddleOCR went from output error 0.44 on pictures to 1.3). Small
        training batches keep their stored statistics while training; `recalibrate` still re-estimates them."""
        if not dataset.micro_batches and not dataset.synthetic:
            self.graph_layers = train_graph_batchnorm(self.proxy)
            for graph_layer in self.graph_layers:
                graph_layer.module.batch_statistics = not self.small_batches

    def normalises_most(self) -> bool:
        """BatchNorm on batch statistics follows at least half of the layers with weights (Conv, Gemm,
        MatMul): an exported CNN, not a transformer whose only Conv is its patch embedding
        (training.steps.weight_optimizer). Layers of a model in micro-batches keep fixed statistics: they
        normalise nothing, and their convolutions train as unnormalised ones (at SGD's 0.03 a tf2onnx
        BlazeFace with a fixed batch of 1 reached outputs of 1e5 after one data-free step, then NaN)."""
        normalising = (sum(layer.batch_stats for layer in self.layers.values())
                       + sum(graph_layer.module.batch_statistics for graph_layer in self.graph_layers))
        return normalising >= 0.5 * max(len(weighted_steps(self.proxy)), 1)

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.weight, layer.bias)]

    @contextmanager
    def held_statistics(self) -> Iterator[None]:
        """Forward passes in training mode (batch statistics) that leave the running statistics as they are."""
        momenta = {idx: layer.momentum for idx, layer in self.layers.items()}
        for layer in self.layers.values():
            layer.momentum = 0.0
        for graph_layer in self.graph_layers:
            graph_layer.set_momentum(0.0)
        try:
            yield
        finally:
            for idx, layer in self.layers.items():
                layer.momentum = momenta[idx]
            for graph_layer in self.graph_layers:
                graph_layer.set_momentum(BatchNormModule.momentum)

    @torch.no_grad()
    def recalibrate(self, dataset: Dataset, *, samples: int = RECALIBRATION_SAMPLES, batch_size: int | None = None,
                    seed: int = 0, device: torch.device | str = "cpu", training_batch: int | None = None) -> None:
        """Running statistics re-estimated on the model as it is now (cumulative average over up to `samples`
        samples in batches of `batch_size` (`pass_batch` unless given) in training mode); the affine parameters
        stay. In micro-batches: moments over the samples (`_recalibrate_by_moments`), as many as fit beside a
        training step of `training_batch`."""
        if dataset.micro_batches:
            samples = min(samples, LOCKSTEP_SAMPLES)
            if training_batch is not None:
                samples = min(samples, max(LOCKSTEP_PER_TRAINING_SAMPLE * training_batch, 1))
            self._recalibrate_by_moments(dataset, samples=samples, seed=seed, device=device)
            return
        batch_size = pass_batch(device) if batch_size is None else batch_size
        batches = max(1, samples // batch_size)
        was_training = self.proxy.training
        self.proxy.train()
        before = {idx: (layer.running_mean.clone(), layer.running_var.clone()) for idx, layer in self.layers.items()}
        graph_before = [graph_layer.statistics() for graph_layer in self.graph_layers]
        stream = dataset.batches(min(batch_size, len(dataset)), np.random.default_rng(seed))
        with torch.no_grad(), self._batch_statistics_while_calibrating(dataset):
            for count in range(max(1, min(batches, -(-len(dataset) // batch_size)))):
                for layer in self.layers.values():
                    layer.momentum = 1.0 / (count + 1)  # the running statistics become the mean over batches
                for graph_layer in self.graph_layers:
                    graph_layer.set_momentum(1.0 / (count + 1))
                batch_outputs(self.proxy, dataset, next(stream), device)
        for idx, layer in self.layers.items():
            layer.momentum = 0.1
            if not (torch.isfinite(layer.running_mean).all() and torch.isfinite(layer.running_var).all()):
                layer.running_mean.copy_(before[idx][0])  # an overflowing sample: keep the statistics it had
                layer.running_var.copy_(before[idx][1])
        for graph_layer, (mean, var) in zip(self.graph_layers, graph_before, strict=True):
            graph_layer.set_momentum(BatchNormModule.momentum)
            if not all(torch.isfinite(t).all() for t in graph_layer.statistics()):
                graph_layer.set_statistics(mean, var)
        self.proxy.train(was_training)

    @contextmanager
    def _batch_statistics_while_calibrating(self, dataset: Dataset) -> Iterator[None]:
        """Layers that train on their running statistics for small batches measure batch statistics while
        calibrating; those fixed for synthetic pictures in mixed ranges keep what `match_model` gave them."""
        small = self.small_batches and not dataset.mixed_ranges
        fixed = [layer for layer in self.layers.values() if small and not layer.batch_stats]
        fixed_graph = [g.module for g in self.graph_layers if small and not g.module.batch_statistics]
        for layer in fixed:
            layer.batch_stats = True
        for module in fixed_graph:
            module.batch_statistics = True
        try:
            yield
        finally:
            for layer in fixed:
                layer.batch_stats = False
            for module in fixed_graph:
                module.batch_statistics = False

    @torch.no_grad()
    def _recalibrate_by_moments(self, dataset: Dataset, *, samples: int, seed: int, device) -> None:
        """Running statistics = the raw outputs' mean and variance over `samples` samples, as one batch of
        them would give: the samples run side by side, step by step, and
        each layer's statistics are set before the layers after it see its output. (Two passes, each with the
        layers before still at the previous pass's statistics, left a deep model one pass behind per layer:
        ddddocr's CRNN, 21 layers deep, reached activations of 1e11 and its fine-tune overflowed.)"""
        was_training = self.proxy.training
        self.proxy.eval()
        order = np.random.default_rng(seed).permutation(len(dataset))[:samples]

        def normalise(_idx: int, module, raw: list[torch.Tensor]) -> list[torch.Tensor]:
            if not isinstance(module, NormalisedConv) or module.collect is None:
                return raw
            mean, var = module.collected_moments()
            if torch.isfinite(mean).all() and torch.isfinite(var).all():
                module.set_running(mean, var)
            return [module.normalised(y) for y in raw]

        for layer in self.layers.values():
            layer.start_collecting()
        try:
            self.proxy.run_together([dataset.feed(int(i), device) for i in order], after_step=normalise)
        finally:
            for layer in self.layers.values():
                layer.collect = None
        self.proxy.train(was_training)

    @torch.no_grad()
    def match_model(self, dataset: Dataset, *, samples: int = 256, batch_size: int | None = None, seed: int = 0,
                    device: torch.device | str = "cpu") -> None:
        """Every layer set to its Conv's output moments on the model as it is now (`gamma` = std, `beta` =
        mean, running statistics the same): the proxy computes what it computed without BatchNorm, in eval
        mode, and in train mode up to batch noise."""
        for layer in self.layers.values():
            layer.start_collecting()
        was_training = self.proxy.training
        self.proxy.eval()
        try:
            _run_over(self.proxy, dataset, np.random.default_rng(seed).permutation(len(dataset))[:samples], device,
                      pass_batch(device) if batch_size is None else batch_size)
        finally:
            self.proxy.train(was_training)
        for layer in self.layers.values():
            mean, var = layer.collected_moments()
            layer.set_running(mean, var)
            layer.weight.copy_(torch.sqrt(var + EPS).float())
            layer.bias.copy_(mean.float())
            layer.initial = layer.state()

    @torch.no_grad()
    def fold(self) -> None:
        """Write each layer's inference-mode normalisation into its Conv weight and bias, then
        restore the plain Conv steps, and the graph's BatchNormalization nodes to their stored statistics
        (updated in place): the proxy computes what it computed in eval mode."""
        for idx, layer in self.layers.items():
            self.proxy.nodes[idx] = layer.conv
            if layer.is_identity():
                continue
            step = self.proxy.steps[idx]
            weight, bias = self.proxy.tensor(step.inputs[1]), self.proxy.tensor(step.inputs[2])
            scale = layer.scale().to(weight.dtype)
            new_bias = (bias.detach().double() - layer.running_mean.double()) * scale.double() \
                + layer.bias.detach().double()
            weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))
            bias.copy_(new_bias.to(bias.dtype))
        self.layers = {}
        release(self.graph_layers)
        self.graph_layers = []


def _foldable_convs(proxy: ProxyModel) -> list[int]:
    """Conv steps with their own float weight and bias parameters (used by no other step)."""
    uses: dict[str, int] = {}
    for step in proxy.steps:
        for name in step.inputs:
            if name:
                uses[name] = uses.get(name, 0) + 1
    chosen = []
    for idx, step in enumerate(proxy.steps):
        if step.op_type != "Conv" or len(step.inputs) < 3 or not step.inputs[2]:
            continue
        w, b = step.inputs[1], step.inputs[2]
        if proxy.parameter_key(w) is None or proxy.parameter_key(b) is None or uses[w] > 1 or uses[b] > 1:
            continue
        if proxy.tensor(w).dtype != torch.float32:
            continue
        chosen.append(idx)
    return chosen


@torch.no_grad()
def insert_batchnorm(proxy: ProxyModel, dataset: Dataset, *, samples: int = 256, batch_size: int | None = None,
                     seed: int = 0, device: torch.device | str = "cpu",
                     steps: Iterable[int] | None = None, training_batch: int | None = None) -> BatchNormHandle:
    """Insert BatchNorm after every foldable Conv, initialised so that the proxy (in eval mode, and in
    train mode up to batch noise) still computes the graph: statistics over `samples` samples. Training
    batches of `training_batch` samples, below MIN_BATCH_STATISTICS, train on the running statistics."""
    indices = list(_foldable_convs(proxy) if steps is None else steps)
    layers: dict[int, NormalisedConv] = {}
    small = training_batch is not None and training_batch < MIN_BATCH_STATISTICS
    for idx in indices:
        channels = proxy.tensor(proxy.steps[idx].inputs[1]).shape[0]
        batch_stats = not (dataset.micro_batches or dataset.mixed_ranges or small)
        layer = NormalisedConv(proxy.nodes[idx], channels, batch_stats=batch_stats).to(device)
        proxy.nodes[idx] = layer
        layers[idx] = layer
    handle = BatchNormHandle(proxy, layers, small_batches=small)
    handle.match_model(dataset, samples=samples, batch_size=batch_size, seed=seed, device=device)
    return handle


def _run_over(proxy: ProxyModel, dataset: Dataset, order: np.ndarray, device, batch_size: int = 64) -> None:
    for start in range(0, len(order), batch_size):
        batch_outputs(proxy, dataset, order[start:start + batch_size], device)
