"""The graph's own BatchNormalization nodes, trained as a framework user trains them.

Exporters that keep BatchNorm as a node (paddle2onnx writes Conv without bias, then
BatchNormalization) leave nothing for `training.batchnorm.insert_batchnorm` to insert: those convolutions
have no bias to fold into. Trained with their stored statistics, the pruned layers train unnormalised.
Here such nodes switch to batch statistics while the search, the recovery and `finetune` train (their
running mean and variance are proxy tensors, updated in place, and written back with the weights) and
join the adaptive re-estimation, as inserted layers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from darp_onnx.proxy import ProxyModel
from darp_onnx.proxy.ops.normalization import BatchNormModule


@dataclass
class GraphBatchNorm:
    """One BatchNormalization node of the graph: its module and its running statistics (proxy tensors)."""

    module: BatchNormModule
    mean: torch.Tensor
    var: torch.Tensor

    def set_momentum(self, value: float) -> None:
        self.module.momentum = value

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.detach().clone(), self.var.detach().clone()

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.var.copy_(var)


def train_graph_batchnorm(proxy: ProxyModel) -> list[GraphBatchNorm]:
    """Every BatchNormalization node whose statistics are float proxy tensors (not shared with other nodes)
    switched to batch statistics in training mode; `release` switches them back."""
    readers: dict[str, int] = {}
    for step in proxy.steps:
        for name in step.inputs:
            readers[name] = readers.get(name, 0) + 1
    found = []
    for step, module in zip(proxy.steps, proxy.nodes, strict=True):
        if not isinstance(module, BatchNormModule) or len(step.inputs) < 5:
            continue
        names = step.inputs[3:5]  # running mean and variance
        if not all(name and proxy.parameter_key(name) and readers[name] == 1 for name in names):
            continue
        tensors = [proxy.tensor(name) for name in names]
        if not all(t.is_floating_point() and t.dim() == 1 for t in tensors):
            continue
        module.batch_statistics = True
        found.append(GraphBatchNorm(module, *tensors))
    return found


def release(layers: list[GraphBatchNorm]) -> None:
    """Back to the stored statistics (the ONNX inference semantics) and the class's momentum."""
    for layer in layers:
        layer.module.batch_statistics = False
        layer.module.__dict__.pop("momentum", None)
