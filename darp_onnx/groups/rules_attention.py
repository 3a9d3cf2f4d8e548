"""Attention heads: projections whose output channels a Reshape splits into (heads H, head_dim D), and
MatMul of two activations (Q K^T, attention x V) that keeps the heads on a batch axis.

The analysis runs twice when it meets such a split (`analysis.analyse`). The first pass meets it at the
Reshape, after the projection's channels have already spread to other tensors, so it only records
which source node's channels are heads of width D (`record_split`). The second pass creates that
source's channels as heads (`source_units`): H units repeated D times each, so the bias, Split, Slice,
Reshape, Transpose and the output projection's rows follow whole heads through the ordinary rules,
and D is never split. A fused QKV projection reshaped to [.., 3, H, D] has 3H units; the three chunks
are coupled there (head h of Q, K and V is one unit), as Q K^T and attention x V couple split ones.

torch's dynamo exporter transposes K for scaled_dot_product_attention by merging the heads into the
batch ([B, H, S, D] -> [B*H, S, D] -> Transpose -> [B, H, D, S]); the heads are remembered inside the
merged axis (`Tracer.merged`) until the Reshape that splits it back, and frozen if anything else reads it.
"""

from __future__ import annotations

from math import prod

import numpy as np
import onnx

from darp_onnx.groups import shape_values as sv
from darp_onnx.groups.dims import Prod
from darp_onnx.groups.head_units import HEAD
from darp_onnx.groups.tracer import Layout, Tracer


def source_units(t: Tracer, node: onnx.NodeProto, n: int, label: str) -> tuple[np.ndarray, int]:
    """Units and repeat for the `n` output channels of a Linear-like source: heads of width D when a
    first pass found them split into heads, blocks where one found them pruned in blocks, else `n` channels."""
    d = t.head_dims.get(node.name, 0)
    if d > 1 and n % d == 0:
        return t.new_atom(n // d, f"{node.name} heads ({n // d} x {d})", node.name, HEAD.name), d
    return t.source_atom(n, label, node.name, atom_node=node.name)


def head_split(in_shape, lay: Layout, out_shape) -> tuple[int, int, int] | None:
    """(m, H, D) when a Reshape splits the last (channel) axis into [m,] H, D and keeps the dims before
    it (their product: the batch may be renamed); m is 1 unless the projection is a fused QKV."""
    if in_shape is None or out_shape is None or lay.tile != 1 or lay.axis != len(in_shape) - 1:
        return None
    a = lay.axis
    tail = out_shape[a:]
    if len(tail) not in (2, 3) or not all(isinstance(d, int) and d > 0 for d in tail) or prod(tail) != lay.size:
        return None
    if None in in_shape[:a] or None in out_shape[:a] or Prod(in_shape[:a]) != Prod(out_shape[:a]):
        return None
    m = tail[0] if len(tail) == 3 else 1
    return (m, tail[-2], tail[-1]) if tail[-1] > 1 else None


def record_split(t: Tracer, lay: Layout, d: int) -> None:
    """First pass: the channels of `lay` are heads of width d; remember their source node when they are
    one aligned, contiguous run of its channels."""
    units = lay.units
    if lay.repeat != 1 or len(units) == 0 or (units < 0).any():
        return
    atom = t.atom_of(int(units[0]))
    if atom is None or not atom.node or int(units[-1]) >= atom.stop:
        return
    if not np.array_equal(units, np.arange(units[0], units[0] + len(units))):
        return
    if (int(units[0]) - atom.start) % d or (atom.stop - atom.start) % d:
        return
    previous = t.head_splits.get(atom.node)
    t.head_splits[atom.node] = d if previous in (None, d) else 0


def split_heads(t: Tracer, node: onnx.NodeProto, lay: Layout, in_shape, out_shape) -> Layout | None:
    """The layout on the heads axis after a Reshape [.., m*H*D] -> [.., m, H, D] of head units (the m
    chunks coupled); None when this is no head split of head units (the first pass records it)."""
    split = head_split(in_shape, lay, out_shape)
    if split is None:
        return None
    m, h, d = split
    if lay.repeat != d or len(lay.units) != m * h:
        if lay.repeat == 1:
            record_split(t, lay, d)
        return None
    chunks = [lay.units[i * h:(i + 1) * h] for i in range(m)]
    for chunk in chunks[1:]:
        if not t.couple(Layout(lay.axis, chunks[0]), Layout(lay.axis, chunk), node):
            return None
    atom = t.atom_of(int(lay.units[0]))
    if m > 1 and atom is not None and (atom.start, atom.stop) == (int(lay.units[0]), int(lay.units[-1]) + 1):
        t.mark_chunks(atom.start, m, f"{atom.node} heads ({h} x {d}, {m} fused projections)")
    return Layout(lay.axis + (1 if len(out_shape) - lay.axis == 3 else 0), chunks[0])


def matmul_activations(t: Tracer, node: onnx.NodeProto) -> None:
    """MatMul of two activations: a tracked batch axis (heads) passes through, coupled between the
    operands; rows of A and columns of B pass through; a tracked contracted axis is frozen."""
    a, b = node.input[0], node.input[1]
    out = node.output[0]
    la, lb = t.layout(a), t.layout(b)
    if la is None and lb is None:
        return
    ra, rb, ro = t.rank(a), t.rank(b), t.rank(out)
    if ra is None or rb is None or ro is None or min(ra, rb) < 2:
        t.freeze_inputs(node, "MatMul of two activations with unknown or 1-D operands")
        return
    placed = []  # (layout, output axis, on a batch axis)
    for lay, rank, contracted, free, out_axis in ((la, ra, ra - 1, ra - 2, ro - 2), (lb, rb, rb - 2, rb - 1, ro - 1)):
        if lay is None:
            continue
        if lay.axis == contracted:
            t.freeze_inputs(node, "MatMul of two activations sums over a tracked axis (head_dim is kept whole)")
            return
        batch = lay.axis != free
        placed.append((lay, lay.axis + ro - rank if batch else out_axis, batch))
    if len({pos for _, pos, _ in placed}) > 1:
        t.freeze_inputs(node, "MatMul of two activations tracks channels on two output axes")
        return
    lay, pos, batch = placed[0]
    if len(placed) == 2 and not t.couple(placed[0][0], placed[1][0], node):
        return
    if len(placed) == 1 and batch and not _broadcasts(t, b if la is not None else a, pos, ro):
        t.freeze_inputs(node, "the other operand of a MatMul of two activations is not broadcast over the heads")
        return
    t.set(out, lay.moved(pos))


def _broadcasts(t: Tracer, name: str, pos: int, out_rank: int) -> bool:
    shape = t.shape(name)
    if shape is None:
        return False
    axis = pos - (out_rank - len(shape))
    return axis < 0 or shape[axis] == 1


def merge_with_batch(t: Tracer, node: onnx.NodeProto, lay: Layout, target) -> bool:
    """A Reshape [B, H, S, D] -> [-1, S, D] of heads on axis 1 (or any axis a: the first a + 1 dims merged):
    remember the heads inside the merged axis; True when the Reshape is such a merge."""
    in_shape, out_shape = t.shape(node.input[0]), t.shape(node.output[0])
    a = lay.axis
    if in_shape is None or out_shape is None or target is None or a == 0 or (lay.repeat, lay.tile) != (1, 1):
        return False
    if len(out_shape) != len(in_shape) - a or len(target) != len(out_shape) or None in in_shape:
        return False
    if None in out_shape[1:] or Prod(out_shape[1:]) != Prod(in_shape[a + 1:]):
        return False
    if not (target[0].literal and target[0].coef == -1) or not all(sv.stays_fixed(t, e) for e in target[1:]):
        return False
    t.merged[node.output[0]] = (lay, tuple(in_shape[:a + 1]))
    return True


def split_from_batch(t: Tracer, node: onnx.NodeProto, target) -> Layout | None:
    """The heads again, after a Reshape that splits a merged batch axis back into its dims."""
    lay, prefix = t.merged[node.input[0]]
    a = lay.axis
    out_shape = t.shape(node.output[0])
    if target is None or out_shape is None or len(out_shape) <= a or len(target) != len(out_shape):
        return None
    if None in out_shape[:a + 1] or Prod(out_shape[:a + 1]) != Prod(prefix) or out_shape[a] != lay.size:
        return None
    new = lay.moved(a)
    for j, e in enumerate(target):
        if j == a and not sv.follows_channels(t, node, e, new, (node.output[0], a)):
            return None
        if j != a and not sv.stays_fixed(t, e):
            return None
    return new


FUSED_ATTENTION = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
                             "PackedMultiHeadAttention", "DecoderMaskedMultiHeadAttention"})


def fused_attention(t: Tracer, node: onnx.NodeProto) -> None:
    """A fused attention op (ONNX Attention, com.microsoft Attention/MultiHeadAttention) holds its heads
    and their count inside one node: what it reads is frozen."""
    t.freeze_inputs(node, f"fused attention op {node.op_type}: its heads are not pruned (export the attention "
                          "as MatMul/Softmax ops to prune them)")
