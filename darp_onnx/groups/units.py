"""Unit kinds: what one unit of a group is, and the policy the search, extraction and reports follow
for it. Groups name their kind (`ChannelGroup.kind`, a registry key, also shown in results); code asks
the kind's policy (`group.unit.aligned`), never compares the name.

A new kind (e.g. attention heads) is one `UnitKind(...)` passed to `register_unit_kind` in its own
file, imported below, plus the analysis rule that creates its groups.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnitKind:
    name: str
    aligned: bool  # kept widths round to the runtime's kernel multiple (`--channel-multiple`)
    droppable: bool  # one on/off switch for a whole structure (min_keep 0), not a slice of weights
    counts_as_channels: bool  # counted in `channels_removed` and `prunable_channels`
    description: str = ""


UNIT_KINDS: dict[str, UnitKind] = {}


def register_unit_kind(kind: UnitKind) -> UnitKind:
    if kind.name in UNIT_KINDS:
        raise ValueError(f"unit kind '{kind.name}' is already registered")
    UNIT_KINDS[kind.name] = kind
    return kind


def unit_kind(name: str) -> UnitKind:
    try:
        return UNIT_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown unit kind '{name}'; known: {', '.join(UNIT_KINDS)}") from None


CHANNEL = register_unit_kind(UnitKind(
    "channel", aligned=True, droppable=False, counts_as_channels=True,
    description="a slice of an activation axis and of every weight axis tied to it"))
BRANCH = register_unit_kind(UnitKind(
    "branch", aligned=False, droppable=True, counts_as_channels=False,
    description="a residual branch F in y = x + F(x): dropped whole, y = x"))

from darp_onnx.groups import head_units  # noqa: E402,F401  (registers "head")
