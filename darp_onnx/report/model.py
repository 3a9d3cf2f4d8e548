"""The plain data model of a graph diff: what changed between two ONNX models, before -> after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Change:
    """One number before and after; `delta` and `percent` are derived (None when either side is)."""

    before: float | int | None
    after: float | int | None

    @property
    def delta(self) -> float | int | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def percent(self) -> float | None:
        """Relative change in percent (-37.5 means 37.5 % smaller); None when before is 0 or unknown."""
        if self.before is None or self.after is None or self.before == 0:
            return None
        return 100.0 * (self.after - self.before) / self.before

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class NodeRef:
    """A node of one model: its name (or '#index' when unnamed), op type and topological index."""

    name: str
    op_type: str
    index: int


@dataclass
class WeightChange:
    """A weight (initializer or Constant) input of a matched node whose shape changed."""

    input_index: int
    name_before: str
    name_after: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]


@dataclass
class Channels:
    """Input/output channel counts of a weight layer (Conv, ConvTranspose, Gemm, MatMul with weights)."""

    in_before: int | None = None
    in_after: int | None = None
    out_before: int | None = None
    out_after: int | None = None


@dataclass
class ResizedNode:
    """A node present in both models whose weights changed shape."""

    name: str
    name_before: str
    op_type: str
    weights: list[WeightChange] = field(default_factory=list)
    channels: Channels | None = None


@dataclass
class AttributeChange:
    """One attribute of a matched node that differs (None on a side where it is absent)."""

    node: str
    op_type: str
    attribute: str
    before: Any
    after: Any


@dataclass
class LayerRow:
    """One matched weight layer, for the channels chart."""

    name: str
    op_type: str
    channels_before: int | None
    channels_after: int | None
    in_channels_before: int | None
    in_channels_after: int | None
    macs_before: int | None
    macs_after: int | None
    weight: str | None = None  # the weight tensor's name in the second model (often the framework's name)

    @property
    def kept_fraction(self) -> float | None:
        if not self.channels_before or self.channels_after is None:
            return None
        return self.channels_after / self.channels_before


@dataclass
class GraphDiff:
    """Everything `diff_models` found, plus optional fields a caller (e.g. `prune`) may fill in."""

    label_before: str = "before"
    label_after: str = "after"
    added: list[NodeRef] = field(default_factory=list)
    removed: list[NodeRef] = field(default_factory=list)
    resized: list[ResizedNode] = field(default_factory=list)
    attribute_changes: list[AttributeChange] = field(default_factory=list)
    matched_by_name: int = 0
    matched_by_position: list[tuple[str, str]] = field(default_factory=list)
    nodes: Change = field(default_factory=lambda: Change(0, 0))
    op_types: dict[str, Change] = field(default_factory=dict)
    macs: Change = field(default_factory=lambda: Change(None, None))
    params: Change = field(default_factory=lambda: Change(None, None))
    serialized_bytes: Change = field(default_factory=lambda: Change(None, None))
    file_bytes: Change | None = None
    layers: list[LayerRow] = field(default_factory=list)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_shapes_from: str | None = None  # where the sizes MACs were counted at came from (None: fixed dims)
    warnings: list[str] = field(default_factory=list)
    # Filled by callers that measured them; the diff itself never runs the models.
    latency_ms: Change | None = None
    fidelity: dict[str, Any] | None = None
    provider: str | None = None
    method: str | None = None
    budget: Any = None
    extraction: dict[str, Any] | None = None  # how prune chose the channels (PruneResult.extraction)
    run: dict[str, Any] | None = None  # prune's stage seconds, resources and data (PruneResult timings/resources/data)

    @property
    def latency_ms_before(self) -> float | None:
        return self.latency_ms.before if self.latency_ms else None

    @latency_ms_before.setter
    def latency_ms_before(self, value: float | None) -> None:
        self._set_latency(value, self.latency_ms_after)

    @property
    def latency_ms_after(self) -> float | None:
        return self.latency_ms.after if self.latency_ms else None

    @latency_ms_after.setter
    def latency_ms_after(self, value: float | None) -> None:
        self._set_latency(self.latency_ms_before, value)

    def _set_latency(self, before: float | None, after: float | None) -> None:
        self.latency_ms = None if before is None and after is None else Change(before, after)

    @property
    def unchanged(self) -> bool:
        """True when the two graphs have the same nodes, weight shapes and attributes."""
        return not (self.added or self.removed or self.resized or self.attribute_changes)
