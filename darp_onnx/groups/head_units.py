"""The attention-head unit kind: one unit is one head of a multi-head attention layer."""

from __future__ import annotations

from darp_onnx.groups.units import UnitKind, register_unit_kind

HEAD = register_unit_kind(UnitKind(
    "head", aligned=False, droppable=False, counts_as_channels=False,
    description="an attention head: its Q, K and V projection columns and biases and the output "
                "projection's input rows (head_dim channels each, never split)"))
