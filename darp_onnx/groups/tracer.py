"""The state of one channel analysis: per-tensor channel layouts in a global channel index space.

Every source (a Conv's output channels...) gets a fresh block of global channel indices (an "atom").
A tensor's tracked axis is described by a `Layout`: the global index of each unit channel, -1 for a
fixed channel. Coupling records index pairs (merged later by union-find); freezing records indices with
a reason. Constants (initializers and Constant-node outputs) bound to a layout get sliced by the rewriter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from darp_onnx.groups.model import ShapeEdit
from darp_onnx.load.constants import constant_node_value

Dim = int | str


@dataclass(frozen=True, eq=False)
class Layout:
    """Axis `axis` of a tensor holds `units` (global channel indices, -1 = fixed), each repeated
    `repeat` times contiguously, the whole run repeated `tile` times (NHWC flattened: tile = H*W)."""

    axis: int
    units: np.ndarray
    repeat: int = 1
    tile: int = 1

    @property
    def size(self) -> int:
        return self.tile * len(self.units) * self.repeat

    def moved(self, axis: int) -> Layout:
        return Layout(axis, self.units, self.repeat, self.tile)


class Atom(NamedTuple):
    """A block [start, stop) of global channel indices created by node `node`; `kind` names its unit
    kind (groups.units): what one index stands for."""

    start: int
    stop: int
    label: str
    node: str = ""
    kind: str = "channel"
    chunks: int = 1  # coupled copies it holds (fused Q, K, V heads): its groups span the first one
    width: int = 1  # channels per unit (a source pruned in blocks, groups.blocks)

    @property
    def first_chunk(self) -> tuple[int, int]:
        return self.start, self.start + (self.stop - self.start) // self.chunks


class Tracer:
    def __init__(self, model: onnx.ModelProto, head_dims: Mapping[str, int] | None = None,
                 blocks: Mapping[str, int] | None = None) -> None:
        graph = model.graph
        self.model = model
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.consts[node.output[0]] = constant_node_value(node, "<model>")[0]
        self.shapes: dict[str, tuple[Dim | None, ...]] = {}  # as inferred; read them through `shape`
        self.merged: dict[str, tuple[Layout, tuple]] = {}  # heads merged into axis 0 (rules_attention)
        self.aliases: dict[str, str] = {}  # symbolic dim -> another name of the same dim (see `unify`)
        self.sizes: dict[str, int] = {}  # symbolic dim -> the number it is (a Reshape's -1 computed, see `unify`)
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in vi.type.tensor_type.shape.dim
                )
        for name, arr in self.consts.items():
            self.shapes[name] = tuple(int(d) for d in arr.shape)
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in graph.node for o in n.output if o}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.layouts: dict[str, Layout] = {}
        self.const_layouts: dict[tuple[str, int], Layout] = {}
        self.const_claims: dict[str, set[str]] = defaultdict(set)
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.freezes: list[tuple[np.ndarray, str]] = []
        self.atoms: list[Atom] = []
        self.head_dims = dict(head_dims or {})  # source node -> head dimension D (its units are heads)
        self.head_splits: dict[str, int] = {}  # found in this pass: source node -> D (0: conflicting)
        self.blocks = dict(blocks or {})  # source node -> channels per unit (groups.blocks: GroupNorm's groups)
        self.block_requests: list[tuple[np.ndarray, int]] = []  # found in this pass: units -> channels per unit
        self.shape_edits: list[ShapeEdit] = []
        self.depthwise: list[str] = []
        self.visited: set[str] = set()  # nodes whose rule has run
        self.shape_values: dict[str, list] = {}  # small int vectors from shape sub-graphs (shape_values.Elem)
        self.float_values: set[str] = set()  # which of them hold floats (Div is exact there)
        self.literal_slots: dict[tuple[str, int, int], Layout | None] = {}  # edited (layout) or pinned (None)
        self.count = 0
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)

    # -- queries -------------------------------------------------------------------------------------
    def layout(self, name: str) -> Layout | None:
        return self.layouts.get(name) if name else None

    def shape(self, name: str) -> tuple[Dim | None, ...] | None:
        shape = self.shapes.get(name)
        if shape is None or not (self.aliases or self.sizes):
            return shape
        return tuple(self.resolved(d) if isinstance(d, str) else d for d in shape)

    def resolved(self, name: str) -> Dim:
        symbol = self._symbol(name)
        return self.sizes.get(symbol, symbol)

    def _symbol(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def unify_broadcast(self, node: onnx.NodeProto, batch_only: bool = False) -> None:
        """Symbolic dims that broadcast against each other (right-aligned; MatMul: its batch dims) are
        taken as one size: exporters broadcast a batch with the same batch, while shape inference names
        the result afresh ('unk__10') whenever the two names differ."""
        names = [n for n in (*node.input, *node.output[:1]) if n]
        shapes = [self.shapes.get(n) for n in names]
        if any(s is None for s in shapes):
            return
        skip = 2 if batch_only else 0
        width = max(len(s) for s in shapes) - skip
        for k in range(1, width + 1):
            dims = [s[len(s) - skip - k] for s in shapes if len(s) - skip - k >= 0]
            symbols = [d for d in dims if isinstance(d, str) and self.resolved(d) != 1]  # 1: a broadcast
            for a in symbols[1:]:
                self.unify((symbols[0],), (a,))

    def unify(self, shape, same) -> None:
        """`shape` and `same` describe one tensor: symbols named differently in them are one dim (shape
        inference names the dims of a Reshape with a computed target afresh: 'unk__12' for the batch)."""
        if shape is None or same is None or len(shape) != len(same):
            return
        for a, b in zip(shape, same, strict=True):
            if isinstance(a, str) and isinstance(b, str) and self._symbol(a) != self._symbol(b):
                old, new = self._symbol(a), self._symbol(b)
                if None not in (self.sizes.get(old), self.sizes.get(new)) and self.sizes[old] != self.sizes[new]:
                    continue  # two numbers: not one dim
                self.aliases[old] = new
                if old in self.sizes:  # the number stays with the dim under its new name
                    self.sizes.setdefault(new, self.sizes[old])
            elif isinstance(a, str) and isinstance(b, int) and b > 0:  # a Reshape's -1 that is a number: HF's
                self.sizes[self._symbol(a)] = b  # view(*shape, -1, head_dim) through TorchScript named it 'unk__3'

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    # -- recording -----------------------------------------------------------------------------------
    def new_atom(self, size: int, label: str, node: str = "", kind: str = "channel", width: int = 1) -> np.ndarray:
        start = self.count
        self.count += size
        self.atoms.append(Atom(start, self.count, label, node, kind, width=width))
        return np.arange(start, self.count, dtype=np.int64)

    def source_layout(self, axis: int, size: int, label: str, node: str) -> Layout:
        """The `size` output channels of source `node` on `axis` (see `source_atom`)."""
        units, repeat = self.source_atom(size, label, node)
        return Layout(axis, units, repeat=repeat)

    def source_atom(self, size: int, label: str, node: str, atom_node: str = "") -> tuple[np.ndarray, int]:
        """Units and repeat for the `size` output channels of source `node`: one unit each, or one per block
        where an earlier pass found them pruned in blocks (`blocks`). `atom_node`: the atom's node (heads)."""
        k = self.blocks.get(node, 1)
        if k > 1 and size % k == 0:
            return self.new_atom(size // k, f"{label} in blocks of {k}", atom_node, width=k), k
        return self.new_atom(size, label, atom_node), 1

    def mark_chunks(self, unit: int, chunks: int, label: str) -> None:
        """The atom of `unit` holds `chunks` coupled copies of its first chunk (fused Q, K, V)."""
        atom = self.atom_of(unit)
        if atom is not None:
            self.atoms[self.atoms.index(atom)] = atom._replace(chunks=chunks, label=label)

    def atom_of(self, unit: int) -> Atom | None:
        """The atom that global index `unit` belongs to (atoms are created in ascending order)."""
        lo, hi = 0, len(self.atoms)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.atoms[mid].stop <= unit:
                lo = mid + 1
            else:
                hi = mid
        return self.atoms[lo] if lo < len(self.atoms) and self.atoms[lo].start <= unit else None

    def set(self, name: str, layout: Layout) -> None:
        if name:
            self.layouts[name] = layout

    def freeze(self, units: np.ndarray, reason: str) -> None:
        units = units[units >= 0]
        if units.size:
            self.freezes.append((units, reason))

    def freeze_inputs(self, node: onnx.NodeProto, reason: str) -> None:
        for name in node.input:
            lay = self.layout(name)
            if lay is not None:
                self.freeze(lay.units, f"{reason} (node '{node.name}', {node.op_type})")

    def couple(self, a: Layout, b: Layout, node: onnx.NodeProto) -> bool:
        """Unify two layouts unit by unit; mismatched layouts are frozen. True when coupled."""
        if len(a.units) != len(b.units) or a.repeat != b.repeat or a.tile != b.tile:
            self._request_blocks(a, b)
            reason = f"node '{node.name}' ({node.op_type}) mixes channel layouts it cannot align"
            self.freeze(a.units, reason)
            self.freeze(b.units, reason)
            return False
        both = (a.units >= 0) & (b.units >= 0)
        if both.any():
            self.edges.append((a.units[both], b.units[both]))
        fixed_a, fixed_b = (a.units < 0) & (b.units >= 0), (b.units < 0) & (a.units >= 0)
        reason = f"coupled with fixed channels at node '{node.name}' ({node.op_type})"
        self.freeze(b.units[fixed_a], reason)
        self.freeze(a.units[fixed_b], reason)
        return True

    def _request_blocks(self, a: Layout, b: Layout) -> None:
        """Equal channel counts in blocks of different widths (a GroupNorm's channels met channels one by one):
        the finer side's sources are asked to make blocks as wide in the next pass."""
        fine, wide = (a, b) if a.repeat < b.repeat else (b, a)
        if a.size == b.size and a.tile == b.tile == 1 and fine.repeat == 1:
            self.block_requests.append((fine.units, wide.repeat))

    def bind_const(self, name: str, axis: int, layout: Layout, node: onnx.NodeProto) -> None:
        """Constant `name` is sliced along `axis` like `layout` (a weight or per-channel vector)."""
        axis = axis % max(1, self.consts[name].ndim)
        bound = layout.moved(axis)
        self.const_claims[name].add(node.name)
        previous = self.const_layouts.get((name, axis))
        if previous is None:
            self.const_layouts[(name, axis)] = bound
        else:
            self.couple(previous, bound, node)

    def edit(self, edit: ShapeEdit) -> None:
        self.shape_edits.append(edit)

    def edit_literal(self, source: tuple[str, int, int], key: tuple[str, int], layout: Layout,
                     node: onnx.NodeProto) -> None:
        """The literal at `source` (node, input, element) becomes the kept size of `layout` (at `key`).
        A literal several consumers need edited couples their layouts; one another needs unchanged
        freezes them."""
        if source not in self.literal_slots:
            self.literal_slots[source] = layout
            self.edit(ShapeEdit(source[0], source[1], source[2], key, 0, layout.size))
            return
        previous = self.literal_slots[source]
        if previous is None:
            self.freeze(layout.units, f"shape constant of node '{source[0]}' also sizes a fixed axis")
        else:
            self.couple(previous, layout.moved(previous.axis), node)

    def pin_literal(self, source: tuple[str, int, int]) -> None:
        """The literal at `source` must keep its value."""
        previous = self.literal_slots.setdefault(source, None)
        if previous is not None:
            self.freeze(previous.units, f"shape constant of node '{source[0]}' also sizes a fixed axis")

    def fresh_atom_frozen(self, size: int, label: str, reason: str) -> np.ndarray:
        units = self.new_atom(size, label)
        self.freeze(units, reason)
        return units
