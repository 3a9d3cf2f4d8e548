"""The channel-group data model shared by the analysis, the gates, the rewriter and the cost model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import gcd

import numpy as np

from darp_onnx.groups.units import UnitKind, unit_kind


@dataclass(frozen=True)
class Segment:
    """Channels [start, stop) of group `group` occupy channels [offset, offset + stop - start) of an
    axis (in units of `AxisMap.repeat`)."""

    group: int
    start: int
    stop: int
    offset: int


@dataclass(frozen=True)
class AxisMap:
    """How the channels of one (tensor, axis) are made of group channels. Channels no segment covers
    are fixed (never pruned). With repeat k, unit channel c occupies the contiguous block
    [c*k, (c+1)*k) of the axis (Flatten of NCHW into a Gemm; a head of head_dim k). With tile m the
    whole run of units repeats m times (Flatten of NHWC: channel c sits at p*C + c for every pixel p)."""

    tensor: str
    axis: int
    size: int
    segments: tuple[Segment, ...]
    repeat: int = 1
    tile: int = 1

    @property
    def units(self) -> int:
        return self.size // (self.repeat * self.tile)

    @property
    def width(self) -> int:
        """Axis channels per unit channel."""
        return self.repeat * self.tile

    def unit_channels(self, unit: int) -> np.ndarray:
        """The axis indices unit `unit` occupies."""
        block = np.arange(unit * self.repeat, (unit + 1) * self.repeat)
        return (block[None, :] + np.arange(self.tile)[:, None] * self.units * self.repeat).reshape(-1)

    def unit_keep(self, masks: Mapping[int, np.ndarray]) -> np.ndarray:
        """Keep flags per unit; groups missing from `masks` are kept whole."""
        keep = np.ones(self.units, dtype=bool)
        for seg in self.segments:
            mask = masks.get(seg.group)
            if mask is not None:
                part = np.asarray(mask, dtype=bool)[seg.start:seg.stop]
                keep[seg.offset:seg.offset + len(part)] = part
        return keep

    def kept_indices(self, masks: Mapping[int, np.ndarray]) -> np.ndarray:
        """Indices into the axis (length-`size` axis) that survive `masks`, ascending."""
        return np.flatnonzero(np.tile(np.repeat(self.unit_keep(masks), self.repeat), self.tile))

    def kept_count(self, masks: Mapping[int, np.ndarray]) -> int:
        return int(self.unit_keep(masks).sum()) * self.width

    def kept_in(self, masks: Mapping[int, np.ndarray], lo: int, hi: int) -> int:
        """How many kept axis indices lie in [lo, hi) (used for Slice starts/ends)."""
        kept = self.kept_indices(masks)
        return int(np.count_nonzero((kept >= lo) & (kept < hi)))


@dataclass
class ChannelGroup:
    id: int
    size: int  # number of units
    kind: str  # a name in groups.units.UNIT_KINDS: "channel", "branch"
    frozen: str | None  # None when prunable, else the reason
    min_keep: int = 1  # 0 only when the whole group may go (branch)
    label: str = ""
    width: int = 1  # channels per unit: more where they go in blocks (groups.blocks: GroupNorm's groups)

    @property
    def unit(self) -> UnitKind:
        """The policy of this group's unit kind (aligned, droppable, counted as channels)."""
        return unit_kind(self.kind)

    def unit_multiple(self, channel_multiple: int) -> int:
        """The kept-unit multiple that keeps a multiple of `channel_multiple` channels (1 when not aligned)."""
        if not self.unit.aligned or channel_multiple <= 1:
            return 1
        return channel_multiple // gcd(channel_multiple, self.width)


@dataclass
class ResidualBranch:
    group: int  # a size-1 group of kind "branch"
    add_node: str  # the Add node y = x + F(x)
    skip_input: str  # tensor x
    branch_output: str  # tensor F(x)
    nodes: tuple[str, ...]  # nodes only F uses (removed when the branch is dropped)


@dataclass(frozen=True)
class ShapeEdit:
    """Element `element` of a node's shape-like constant input `input_index` (or of its int/ints
    attribute `attr` when input_index == -1; element -1 means a scalar attribute) becomes the number of
    kept indices in [lo, hi) of axis map `key`. A missing key (axis with no groups) keeps hi - lo. An input
    computed at run time from channel counts (`base` given) is replaced by a constant."""

    node: str
    input_index: int
    element: int
    key: tuple[str, int]
    lo: int
    hi: int
    attr: str = ""
    base: tuple[int, ...] = ()  # the whole vector before pruning, when the input is computed, not a constant

    def value(self, axis_maps: Mapping[tuple[str, int], AxisMap], masks: Mapping[int, np.ndarray]) -> int:
        amap = axis_maps.get(self.key)
        if amap is None:
            return self.hi - self.lo
        return amap.kept_in(masks, self.lo, self.hi)


@dataclass
class ChannelAnalysis:
    groups: list[ChannelGroup]
    axis_maps: dict[tuple[str, int], AxisMap]  # activations and constants (initializer/Constant names)
    branches: list[ResidualBranch]
    frozen_reasons: list[str]
    shape_edits: list[ShapeEdit] = field(default_factory=list)

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.frozen is None]

    def all_kept(self) -> dict[int, np.ndarray]:
        return {g.id: np.ones(g.size, dtype=bool) for g in self.groups}

    def group(self, gid: int) -> ChannelGroup:
        return self.groups[gid]
