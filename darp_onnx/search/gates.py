"""Proxy gates: multiply what each sink reads by the gate vector of its channels.

Gating at sink inputs (Conv/Gemm/MatMul input channels, and a residual branch's output at its Add) makes
the proxy with 0/1 gates compute exactly what the rewritten model computes: a pruned channel never
reaches anything that mixes channels, and everything else is per-channel.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from darp_onnx.groups.model import AxisMap, ChannelAnalysis
from darp_onnx.groups.rules import SINK_OPS, mixes_channels
from darp_onnx.proxy.model import ProxyModel


def gate_vector(amap: AxisMap, gates: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """Length-`size` vector of an axis map: 1.0 on fixed channels, the group's gate (repeated) on
    covered ones. Built with torch.cat so gradients reach the gates."""
    ref = next(iter(gates.values()), None)
    kw = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {"dtype": torch.float32}
    pieces: list[torch.Tensor] = []
    pos = 0
    for seg in sorted(amap.segments, key=lambda s: s.offset):
        gate = gates.get(seg.group)
        if gate is None:
            continue
        if seg.offset > pos:
            pieces.append(torch.ones(seg.offset - pos, **kw))
        pieces.append(gate[seg.start:seg.stop].to(**kw))
        pos = seg.offset + seg.stop - seg.start
    if pos < amap.units:
        pieces.append(torch.ones(amap.units - pos, **kw))
    vec = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    vec = vec.repeat_interleave(amap.repeat) if amap.repeat > 1 else vec
    return vec.repeat(amap.tile) if amap.tile > 1 else vec  # NHWC flattened: the run repeats per pixel


def _scale(value: torch.Tensor, amap: AxisMap, gates: Mapping[int, torch.Tensor]) -> torch.Tensor:
    vec = gate_vector(amap, gates).to(dtype=value.dtype, device=value.device)
    shape = [1] * value.dim()
    shape[amap.axis] = -1
    return value * vec.view(shape)


class GateHandle:
    """Installed on a proxy by `attach_gates`; `set` / `set_masks` / `clear` / `remove`."""

    def __init__(self, proxy: ProxyModel, analysis: ChannelAnalysis) -> None:
        self.proxy = proxy
        self.analysis = analysis
        self.gates: dict[int, torch.Tensor] = {}
        self._frozen = {g.id for g in analysis.groups if g.frozen is not None}
        self._previous: dict[int, object] = {}
        constants = {src.name for src in proxy.param_sources.values()}
        branch_at = {b.add_node: b for b in analysis.branches}
        maps_by_tensor = {key[0]: amap for key, amap in analysis.axis_maps.items()}
        for idx, step in enumerate(proxy.steps):
            plan: list[tuple[int, object, str]] = []  # (input, axis map or branch group, op)
            if step.op_type in SINK_OPS:
                for pos, name in enumerate(step.inputs):
                    amap = maps_by_tensor.get(name)
                    if name and name not in constants and amap is not None and amap.segments:
                        plan.append((pos, amap, step.op_type))
            branch = branch_at.get(step.node_name)
            if branch is not None:
                plan += [(pos, branch.group, "") for pos, name in enumerate(step.inputs)
                         if name == branch.branch_output]
            if plan:
                self._previous[idx] = proxy.input_transforms.get(idx)
                proxy.input_transforms[idx] = self._transform(plan, self._previous[idx])

    def _transform(self, plan, previous):
        def apply(args: list) -> list:
            if previous is not None:
                args = previous(args)
            if not self.gates:
                return args
            args = list(args)
            for pos, target, op_type in plan:
                if isinstance(target, AxisMap):
                    if mixes_channels(op_type, pos, target.axis, args[pos].dim()):
                        args[pos] = _scale(args[pos], target, self.gates)
                elif target in self.gates:
                    args[pos] = args[pos] * self.gates[target].reshape(()).to(args[pos].dtype)
            return args

        return apply

    def set(self, gates: Mapping[int, torch.Tensor]) -> None:
        """Use these gates (float tensors of each group's size); frozen groups' gates are ignored."""
        for gid, gate in gates.items():
            if gate.shape != (self.analysis.groups[gid].size,):
                raise ValueError(f"gate for group {gid} has shape {tuple(gate.shape)}, "
                                 f"expected ({self.analysis.groups[gid].size},)")
        self.gates = {gid: gate for gid, gate in gates.items() if gid not in self._frozen}

    def set_masks(self, masks: Mapping[int, np.ndarray]) -> None:
        """0/1 gates from keep masks (the proxy then matches `rewrite(model, analysis, masks)`)."""
        for gid, mask in masks.items():
            if gid in self._frozen and not np.all(mask):
                reason = self.analysis.groups[gid].frozen
                raise ValueError(f"group {gid} is frozen ({reason}); it cannot be pruned")
        self.set({gid: torch.as_tensor(np.asarray(mask, dtype=np.float32)) for gid, mask in masks.items()})

    def clear(self) -> None:
        self.gates = {}

    def remove(self) -> None:
        """Uninstall: restore whatever transforms were there before."""
        for idx, previous in self._previous.items():
            if previous is None:
                self.proxy.input_transforms.pop(idx, None)
            else:
                self.proxy.input_transforms[idx] = previous
        self._previous = {}
        self.gates = {}


def attach_gates(proxy: ProxyModel, analysis: ChannelAnalysis) -> GateHandle:
    return GateHandle(proxy, analysis)
