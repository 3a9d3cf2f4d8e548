"""Indexing ops: Gather, GatherElements, GatherND, ScatterND, Trilu, CumSum, TopK, ReverseSequence.

Negative indices count from the end of their axis, as in ONNX. TopK uses a stable sort, so equal values
come out lower index first (the ONNX rule, which onnxruntime follows).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter, schema_versions

__all__ = ["CumSum", "Gather", "GatherElements", "GatherND", "ReverseSequence", "ScatterND", "TopK", "Trilu"]


def _wrap(indices: torch.Tensor, size: int) -> torch.Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


class Gather(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        axis = self.axis + data.dim() if self.axis < 0 else self.axis
        if indices.dim() == 0:
            # a scalar index (q/k/v picked out of a fused projection) is a view: cheaper forward and backward
            return data.select(axis, int(indices))
        idx = _wrap(indices, data.shape[axis])
        out = data.index_select(axis, idx.reshape(-1))
        return out.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :]))

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class GatherElements(nn.Module):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        axis = self.axis + data.dim() if self.axis < 0 else self.axis
        return torch.gather(data, axis, _wrap(indices, data.shape[axis]))

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class GatherND(nn.Module):
    def __init__(self, batch_dims: int) -> None:
        super().__init__()
        self.batch_dims = batch_dims

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        b = self.batch_dims
        k = indices.shape[-1]
        batch_shape = data.shape[:b]
        nb = math.prod(batch_shape)
        flat_data = data.reshape((nb, *data.shape[b:]))
        flat_idx = indices.long().reshape(nb, -1, k)  # [batch, lookups, k]
        index = [torch.arange(nb, device=data.device).unsqueeze(1)]
        index += [_wrap(flat_idx[..., j], data.shape[b + j]) for j in range(k)]
        out = flat_data[tuple(index)]  # [batch, lookups, *data.shape[b + k:]]
        return out.reshape((*batch_shape, *indices.shape[b:-1], *data.shape[b + k :]))

    def extra_repr(self) -> str:
        return f"batch_dims={self.batch_dims}"


class ScatterND(nn.Module):
    """A copy of data with the slices addressed by indices replaced (or reduced) with updates."""

    _REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        head = data.shape[:k]
        idx = indices.long().reshape(-1, k)
        linear = torch.zeros(idx.shape[0], dtype=torch.int64, device=data.device)
        for j in range(k):
            linear = linear * head[j] + _wrap(idx[:, j], head[j])
        flat = data.reshape((math.prod(head), *data.shape[k:]))
        upd = updates.reshape((idx.shape[0], *data.shape[k:])).to(data.dtype)
        if self.reduction == "none":
            out = flat.index_put((linear,), upd)
        elif self.reduction == "add":
            out = flat.index_add(0, linear, upd)
        else:
            rows, upd2 = flat.reshape(flat.shape[0], -1), upd.reshape(upd.shape[0], -1)
            index = linear.unsqueeze(1).expand_as(upd2)
            out = rows.scatter_reduce(0, index, upd2, self._REDUCE[self.reduction], include_self=True)
        return out.reshape(data.shape)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction}"


class Trilu(nn.Module):
    def __init__(self, upper: bool) -> None:
        super().__init__()
        self.upper = upper

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        diagonal = to_int_list(k)[0] if k is not None else 0
        return torch.triu(x, diagonal) if self.upper else torch.tril(x, diagonal)

    def extra_repr(self) -> str:
        return f"upper={self.upper}"


class CumSum(nn.Module):
    def __init__(self, exclusive: bool, reverse: bool) -> None:
        super().__init__()
        self.exclusive = exclusive
        self.reverse = reverse

    def forward(self, x: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        dim = to_int_list(axis)[0]
        dim = dim + x.dim() if dim < 0 else dim
        if self.reverse:
            x = x.flip(dim)
        out = torch.cumsum(x, dim, dtype=x.dtype)
        if self.exclusive:
            zero = torch.zeros_like(x.narrow(dim, 0, 1))
            out = torch.cat([zero, out.narrow(dim, 0, x.shape[dim] - 1)], dim)
        return out.flip(dim) if self.reverse else out

    def extra_repr(self) -> str:
        return f"exclusive={self.exclusive}, reverse={self.reverse}"


class ReverseSequence(nn.Module):
    """Each batch entry's first `lengths[b]` steps along `time_axis` reversed, the rest as they are (the
    backward half of a Keras Bidirectional layer, as tf2onnx writes it)."""

    def __init__(self, batch_axis: int, time_axis: int) -> None:
        super().__init__()
        self.batch_axis, self.time_axis = batch_axis, time_axis

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        moved = x.movedim((self.batch_axis, self.time_axis), (0, 1))
        steps = torch.arange(moved.shape[1], device=x.device).unsqueeze(0)
        count = lengths.to(x.device).long().view(-1, 1)
        order = torch.where(steps < count, count - 1 - steps, steps)
        order = order.view(*order.shape, *([1] * (moved.dim() - 2))).expand_as(moved)
        return torch.gather(moved, 1, order).movedim((0, 1), (self.batch_axis, self.time_axis))

    def extra_repr(self) -> str:
        return f"batch_axis={self.batch_axis}, time_axis={self.time_axis}"


class TopK(nn.Module):
    """Values and int64 indices of the k largest (or smallest) entries along `axis`.

    With sorted=0 ONNX leaves the order unspecified; the proxy returns sorted order (onnxruntime's
    unsorted order is an implementation detail of its heap), so the same elements come out.
    """

    def __init__(self, axis: int, largest: bool, k: int | None = None) -> None:
        super().__init__()
        self.axis = axis
        self.largest = largest
        self.k = k  # opset 1 attribute form

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None):
        kk = to_int_list(k)[0] if k is not None else self.k
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        _, order = torch.sort(x.detach(), dim=axis, descending=self.largest, stable=True)
        indices = order.narrow(axis, 0, kk)
        return torch.gather(x, axis, indices), indices

    def extra_repr(self) -> str:
        return f"axis={self.axis}, largest={self.largest}"


@add_converter("Gather")
def convert_gather(node, ctx):
    return result_for(node, Gather(int(node_attributes(node).get("axis", 0))))


@add_converter("GatherElements")
def convert_gather_elements(node, ctx):
    return result_for(node, GatherElements(int(node_attributes(node).get("axis", 0))))


@add_converter("GatherND")
def convert_gather_nd(node, ctx):
    return result_for(node, GatherND(int(node_attributes(node).get("batch_dims", 0))))


@add_converter("ScatterND")
def convert_scatter_nd(node, ctx):
    reduction = node_attributes(node).get("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise NotImplementedError(f"ScatterND reduction '{reduction}' is not supported")
    return result_for(node, ScatterND(reduction))


@add_converter("Trilu")
def convert_trilu(node, ctx):
    return result_for(node, Trilu(bool(node_attributes(node).get("upper", 1))))


@add_converter("ReverseSequence")
def convert_reverse_sequence(node, ctx):
    attrs = node_attributes(node)
    return result_for(node, ReverseSequence(int(attrs.get("batch_axis", 1)), int(attrs.get("time_axis", 0))))


@add_converter("CumSum")
def convert_cumsum(node, ctx):
    attrs = node_attributes(node)
    return result_for(node, CumSum(bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))))


@add_converter("TopK", versions=[1])
def convert_topk_attr(node, ctx):
    attrs = node_attributes(node)
    return result_for(node, TopK(int(attrs.get("axis", -1)), True, int(attrs["k"])))


@add_converter("TopK", versions=[v for v in schema_versions("TopK") if v >= 10])
def convert_topk_input(node, ctx):
    attrs = node_attributes(node)
    return result_for(node, TopK(int(attrs.get("axis", -1)), bool(attrs.get("largest", 1))))
