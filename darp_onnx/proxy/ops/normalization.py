"""Normalization: BatchNormalization (inference), InstanceNormalization, LayerNormalization,
GroupNormalization (opset 18 per-group and opset 21 per-channel affine), LpNormalization, LRN.

Statistics are written out as plain torch arithmetic (not F.batch_norm) so gradients reach every
input, including BatchNormalization's running mean and variance when they are trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = [
    "BatchNormModule",
    "BatchNormTrainingModule",
    "GroupNormModule",
    "InstanceNormModule",
    "LayerNormModule",
    "LpNormModule",
    "LRNModule",
]


def _channel_view(t: torch.Tensor, rank: int) -> torch.Tensor:
    """A per-channel (C,) tensor shaped to broadcast against (N, C, D1, ...)."""
    return t.reshape([1, -1] + [1] * (rank - 2))


def _extra_outputs(node) -> list[str]:
    return [name for name in node.output[1:] if name]


class BatchNormModule(nn.Module):
    """Inference semantics (the stored running statistics). With `batch_statistics` set and the module
    in training mode it normalises with the batch's mean and biased variance instead and updates the
    running mean/variance tensors in place (momentum 0.1, unbiased variance), as torch's BatchNorm."""

    momentum = 0.1

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.batch_statistics = False

    def forward(self, x, scale, bias, mean, var):
        rank = x.dim()
        if self.batch_statistics and self.training:
            mean, var = self._batch_stats(x, mean, var)
        factor = scale * torch.rsqrt(var + self.epsilon)
        return (x - _channel_view(mean, rank)) * _channel_view(factor, rank) + _channel_view(bias, rank)

    def _batch_stats(self, x, running_mean, running_var):
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims)
        var = (x - _channel_view(mean, x.dim())).square().mean(dim=dims)
        count = x.numel() // max(x.shape[1], 1)
        with torch.no_grad():
            momentum = self.momentum
            running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            if count > 1:
                unbiased = var.detach() * (count / (count - 1))
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        return mean, var

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


class BatchNormTrainingModule(nn.Module):
    """BatchNormalization with training_mode=1 (opset 14+): normalises with the batch's mean and biased
    variance and returns the updated running statistics, input * momentum + batch * (1 - momentum)."""

    def __init__(self, epsilon: float, momentum: float, n_outputs: int) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.momentum = momentum
        self.n_outputs = n_outputs

    def forward(self, x, scale, bias, running_mean, running_var):
        rank = x.dim()
        dims = [0, *range(2, rank)]
        mean = x.mean(dim=dims)
        var = (x - _channel_view(mean, rank)).square().mean(dim=dims)
        factor = scale * torch.rsqrt(var + self.epsilon)
        y = (x - _channel_view(mean, rank)) * _channel_view(factor, rank) + _channel_view(bias, rank)
        if self.n_outputs == 1:
            return y
        m = self.momentum
        return (y, running_mean * m + mean * (1 - m), running_var * m + var * (1 - m))[: self.n_outputs]

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, momentum={self.momentum}"


# BatchNormalization-1 (opset < 6, consumed_inputs): no test covers it, not claimed.
@add_converter("BatchNormalization", versions=[v for v in schema_versions("BatchNormalization") if v >= 6])
def convert_batch_norm(node, ctx):
    attrs = node_attributes(node)
    training = int(attrs.get("training_mode", 0)) == 1
    if training and ctx.opset >= 14:
        module = BatchNormTrainingModule(float(attrs.get("epsilon", 1e-5)), float(attrs.get("momentum", 0.9)),
                                         len(node.output))
        return result_for(node, module)
    if training or int(attrs.get("is_test", 1)) == 0:
        raise NotImplementedError("BatchNormalization in training mode before opset 14 (is_test=0)")
    if int(attrs.get("spatial", 1)) == 0:
        raise NotImplementedError("BatchNormalization with spatial=0 (per-activation statistics)")
    if _extra_outputs(node):
        raise NotImplementedError("BatchNormalization outputs beyond Y (running/saved statistics exist only "
                                  "in training mode)")
    return result_for(node, BatchNormModule(float(attrs.get("epsilon", 1e-5))))


class InstanceNormModule(nn.Module):
    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, x, scale, bias):
        dims = list(range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).square().mean(dim=dims, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.epsilon)
        return y * _channel_view(scale, x.dim()) + _channel_view(bias, x.dim())

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


@add_converter("InstanceNormalization")
def convert_instance_norm(node, ctx):
    attrs = node_attributes(node)
    return result_for(node, InstanceNormModule(float(attrs.get("epsilon", 1e-5))))


class LayerNormModule(nn.Module):
    """Normalises over axes [axis, rank); optionally also returns Mean and InvStdDev (kept dims)."""

    def __init__(self, axis: int, epsilon: float, n_outputs: int) -> None:
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon
        self.n_outputs = n_outputs

    def forward(self, x, scale, bias=None):
        axis = self.axis % x.dim()
        dims = list(range(axis, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        inv_std = torch.rsqrt(centred.square().mean(dim=dims, keepdim=True) + self.epsilon)
        y = centred * inv_std * scale
        if bias is not None:
            y = y + bias
        if self.n_outputs == 1:
            return y
        return (y, mean, inv_std)[: self.n_outputs]

    def extra_repr(self) -> str:
        return f"axis={self.axis}, epsilon={self.epsilon}"


@add_converter("LayerNormalization")
def convert_layer_norm(node, ctx):
    attrs = node_attributes(node)
    if int(attrs.get("stash_type", 1)) != 1:
        raise NotImplementedError(f"LayerNormalization stash_type={attrs['stash_type']} (only 1, float)")
    module = LayerNormModule(int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)), len(node.output))
    return result_for(node, module)


class GroupNormModule(nn.Module):
    """`per_channel` False is the opset-18 form (scale and bias hold one value per group)."""

    def __init__(self, num_groups: int, epsilon: float, per_channel: bool) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.epsilon = epsilon
        self.per_channel = per_channel

    def forward(self, x, scale, bias):
        n, c = x.shape[0], x.shape[1]
        groups = x.reshape(n, self.num_groups, -1)
        mean = groups.mean(dim=-1, keepdim=True)
        centred = groups - mean
        inv_std = torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + self.epsilon)
        y = (centred * inv_std).reshape(x.shape)
        if not self.per_channel:
            scale = scale.repeat_interleave(c // self.num_groups)
            bias = bias.repeat_interleave(c // self.num_groups)
        return y * _channel_view(scale, x.dim()) + _channel_view(bias, x.dim())

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, epsilon={self.epsilon}, per_channel={self.per_channel}"


def _group_norm(node, per_channel: bool):
    attrs = node_attributes(node)
    if int(attrs.get("stash_type", 1)) != 1:
        raise NotImplementedError(f"GroupNormalization stash_type={attrs['stash_type']} (only 1, float)")
    module = GroupNormModule(int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5)), per_channel)
    return result_for(node, module)


@add_converter("GroupNormalization", versions=[18])
def convert_group_norm_18(node, ctx):
    return _group_norm(node, per_channel=False)


@add_converter("GroupNormalization", versions=[21])
def convert_group_norm_21(node, ctx):
    return _group_norm(node, per_channel=True)


class LpNormModule(nn.Module):
    def __init__(self, axis: int, p: int) -> None:
        super().__init__()
        self.axis = axis
        self.p = p

    def forward(self, x):
        if self.p == 1:
            norm = x.abs().sum(dim=self.axis, keepdim=True)
        else:
            norm = x.square().sum(dim=self.axis, keepdim=True).sqrt()
        # A zero vector stays zero (onnxruntime does not divide by a zero norm).
        return x / torch.where(norm == 0, torch.ones_like(norm), norm)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, p={self.p}"


@add_converter("LpNormalization")
def convert_lp_norm(node, ctx):
    attrs = node_attributes(node)
    p = int(attrs.get("p", 2))
    if p not in (1, 2):
        raise NotImplementedError(f"LpNormalization p={p} (only 1 and 2)")
    return result_for(node, LpNormModule(int(attrs.get("axis", -1)), p))


class LRNModule(nn.Module):
    """ONNX sums squares over channels [c - floor((size-1)/2), c + ceil((size-1)/2)]; torch's
    local_response_norm centres even windows the other way, so the window is built here."""

    def __init__(self, size: int, alpha: float, beta: float, bias: float) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.bias = bias

    def forward(self, x):
        front, back = (self.size - 1) // 2, self.size // 2
        sq = x.square().movedim(1, -1)
        sq = F.pad(sq, [front, back])
        window_sum = sq.unfold(-1, self.size, 1).sum(dim=-1).movedim(-1, 1)
        return x / (self.bias + self.alpha / self.size * window_sum).pow(self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, bias={self.bias}"


@add_converter("LRN")
def convert_lrn(node, ctx):
    attrs = node_attributes(node)
    if int(attrs["size"]) % 2 == 0:
        # The ONNX window is lopsided for even sizes and onnxruntime rejects them: nothing to match.
        raise NotImplementedError(f"LRN with even size={attrs['size']} (onnxruntime supports odd sizes only)")
    module = LRNModule(int(attrs["size"]), float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                       float(attrs.get("bias", 1.0)))
    return result_for(node, module)
