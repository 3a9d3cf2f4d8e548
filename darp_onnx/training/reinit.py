"""Re-initialising a proxy's weights by their role, and BatchNormalization's batch-statistics switch.

Each parameter's role comes from its first consumer (op type and input position) in `proxy.steps`:
Conv/ConvTranspose/Gemm/MatMul weights get torch's default kaiming-uniform(a=sqrt(5)) by fan-in and
their biases (also the constant of an Add right after a MatMul) U(+-1/sqrt(fan_in)); normalisation
scales 1, shifts 0, BatchNormalization running mean 0 and variance 1; PRelu slopes 0.25; everything
else (positional embeddings, class tokens, other float constants) a normal of std 0.02 truncated at
two standard deviations.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from darp_onnx.proxy import ProxyModel, Step
from darp_onnx.proxy.ops.normalization import BatchNormModule

_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_NORMS = ("LayerNormalization", "InstanceNormalization", "GroupNormalization")
_BN_VALUES = {1: 1.0, 2: 0.0, 3: 0.0, 4: 1.0}  # scale, bias, running mean, running variance
BN_MODES = ("batch_stats", "inference")


def _weight_fan_in(module: torch.nn.Module, step: Step, pos: int, shape: tuple[int, ...]) -> int | None:
    """Fan-in of a linear op's weight at input `pos`, or None when `pos` is not its weight."""
    if step.op_type == "Conv" and pos == 1 and len(shape) >= 2:
        return int(np.prod(shape[1:]))
    if step.op_type == "ConvTranspose" and pos == 1 and len(shape) >= 2:
        return int(np.prod(shape[1:]))  # torch's convention for [in, out/groups, k...]
    if step.op_type == "Gemm" and pos == 1 and len(shape) == 2:
        return shape[1] if getattr(module, "trans_b", False) else shape[0]
    if step.op_type == "MatMul" and len(shape) >= 2:
        return shape[-2] if pos == 1 else shape[-1]
    return None


class _Roles:
    """Looks up the role of each constant tensor in the proxy's steps."""

    def __init__(self, proxy: ProxyModel) -> None:
        self.proxy = proxy
        self.consumers: dict[str, tuple[Step, int]] = {}
        self.producer: dict[str, Step] = {}
        self.modules = {id(step): module for step, module in zip(proxy.steps, proxy.nodes, strict=True)}
        for step in proxy.steps:
            for pos, name in enumerate(step.inputs):
                if name and name not in self.consumers:
                    self.consumers[name] = (step, pos)
            for name in step.outputs:
                self.producer[name] = step

    def _shape(self, name: str) -> tuple[int, ...] | None:
        key = self.proxy.parameter_key(name)
        return None if key is None else tuple(self.proxy.weights[key].shape)

    def _linear_fan_in(self, step: Step) -> int | None:
        """Fan-in of a linear step's weight, when that weight is a trained parameter."""
        pos = 0 if step.op_type == "MatMul" and self.proxy.parameter_key(step.inputs[0]) else 1
        if len(step.inputs) <= pos or not step.inputs[pos] or self._shape(step.inputs[pos]) is None:
            return None
        return _weight_fan_in(self.modules[id(step)], step, pos, self._shape(step.inputs[pos]))

    def role(self, name: str, shape: tuple[int, ...]) -> tuple[str, float]:
        """('uniform', bound), ('fill', value) or ('trunc_normal', std)."""
        if name not in self.consumers:
            return "trunc_normal", 0.02
        step, pos = self.consumers[name]
        op = step.op_type
        if op in _LINEAR:
            fan_in = _weight_fan_in(self.modules[id(step)], step, pos, shape)
            if fan_in is None and pos == 2:  # a bias (Gemm's C, or a MatMul fused with its bias Add)
                fan_in = self._linear_fan_in(step)
            if fan_in is not None:
                return "uniform", 1.0 / math.sqrt(max(fan_in, 1))
        if op == "Add" and len(shape) <= 2:
            other = step.inputs[1 - pos] if pos < 2 else ""
            producer = self.producer.get(other)
            if producer is not None and producer.op_type in _LINEAR:
                fan_in = self._linear_fan_in(producer)
                if fan_in is not None:
                    return "uniform", 1.0 / math.sqrt(max(fan_in, 1))
        if op == "BatchNormalization" and pos in _BN_VALUES:
            return "fill", _BN_VALUES[pos]
        if op in _NORMS and pos in (1, 2):
            return "fill", 1.0 if pos == 1 else 0.0
        if op == "PRelu" and pos == 1:
            return "fill", 0.25
        return "trunc_normal", 0.02


@torch.no_grad()
def reinit_weights(proxy: ProxyModel, seed: int = 0) -> dict[str, str]:
    """Give every float parameter of the proxy a fresh value by its role; returns key -> role."""
    roles = _Roles(proxy)
    generator = torch.Generator().manual_seed(seed)
    applied: dict[str, str] = {}
    for key, param in proxy.weights.items():
        shape = tuple(param.shape)
        kind, value = roles.role(proxy.param_sources[key].name, shape)
        if kind == "uniform":
            fresh = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * value
        elif kind == "fill":
            fresh = torch.full(shape, value, dtype=torch.float64)
        else:
            fresh = torch.empty(shape, dtype=torch.float64)
            torch.nn.init.trunc_normal_(fresh, std=value, a=-2 * value, b=2 * value, generator=generator)
        param.copy_(fresh.to(param.dtype))
        applied[key] = kind
    return applied


def set_batchnorm_mode(proxy: ProxyModel, mode: str) -> int:
    """'batch_stats': BatchNormalization normalises with batch statistics while the proxy trains and
    updates its running statistics; 'inference': the stored running statistics (the ONNX semantics).
    Only nodes whose running mean and variance are parameters (written back by `to_onnx`) switch;
    returns how many BatchNormalization nodes are in batch-statistics mode."""
    if mode not in BN_MODES:
        raise ValueError(f"mode must be one of {BN_MODES}")
    count = 0
    for step, module in zip(proxy.steps, proxy.nodes, strict=True):
        if not isinstance(module, BatchNormModule):
            continue
        stats = step.inputs[3:5]
        writable = len(stats) == 2 and all(name and proxy.parameter_key(name) for name in stats)
        module.batch_statistics = mode == "batch_stats" and bool(writable)
        count += int(module.batch_statistics)
    return count
