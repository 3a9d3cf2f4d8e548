"""Turn the tracer's coupled global channel indices into channel groups and axis maps.

Coupled indices are merged by a vectorised union-find (each component labelled by its smallest index).
Groups are then cut so that every layout covers whole groups only: a group is kept or pruned channel by
channel, yet no layout (e.g. one output of a Split) can lose a group partially and end up empty unless
the whole group goes, which `min_keep=1` forbids.
"""

from __future__ import annotations

import numpy as np

from darp_onnx.groups.model import AxisMap, ChannelGroup, Segment
from darp_onnx.groups.tracer import Layout, Tracer


def components(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Label of each index = the smallest index of its connected component."""
    labels = np.arange(n, dtype=np.int64)
    if not edges or n == 0:
        return labels
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    while True:
        before = labels.copy()
        la, lb = labels[a], labels[b]
        low = np.minimum(la, lb)
        for idx in (a, b, la, lb):
            np.minimum.at(labels, idx, low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(before, labels):
            return labels


def _run_cuts(reps: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
    prev_ok = np.zeros_like(valid)
    prev_ok[1:] = valid[:-1] & valid[1:] & (reps[1:] == reps[:-1] + 1)
    next_ok = np.zeros_like(valid)
    next_ok[:-1] = prev_ok[1:]
    return [reps[valid & ~prev_ok], reps[valid & ~next_ok] + 1]


class Partition:
    """Group ids and in-group positions for every global channel index."""

    def __init__(self, tracer: Tracer, layouts: list[Layout]) -> None:
        n = tracer.count
        self.labels = components(n, tracer.edges)
        is_rep = self.labels == np.arange(n)
        cuts = [np.array([0, n])]
        cuts += [np.array([a.start, a.stop]) for a in tracer.atoms]
        cuts.append(np.flatnonzero(is_rep[1:] != is_rep[:-1]) + 1)
        for lay in layouts:
            valid = lay.units >= 0
            reps = np.where(valid, self.labels[np.maximum(lay.units, 0)], -1)
            cuts += _run_cuts(reps, valid)
        bounds = np.unique(np.concatenate(cuts))
        self.group_of = np.full(n, -1, dtype=np.int64)
        self.pos_in_group = np.zeros(n, dtype=np.int64)
        self.groups: list[ChannelGroup] = []
        atom_starts = np.array([a[0] for a in tracer.atoms], dtype=np.int64)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            if hi <= lo or not is_rep[lo]:
                continue
            gid = len(self.groups)
            self.group_of[lo:hi] = gid
            self.pos_in_group[lo:hi] = np.arange(hi - lo)
            atom = tracer.atoms[int(np.searchsorted(atom_starts, lo, side="right")) - 1]
            label = atom.label
            if (lo, hi) not in ((atom.start, atom.stop), atom.first_chunk):
                label = f"{label}[{lo - atom.start}:{hi - atom.start}]"
            self.groups.append(ChannelGroup(id=gid, size=int(hi - lo), kind=atom.kind, frozen=None, label=label,
                                            width=atom.width))

    def groups_of(self, units: np.ndarray) -> np.ndarray:
        units = units[units >= 0]
        return np.unique(self.group_of[self.labels[units]])

    def axis_map(self, tensor: str, lay: Layout) -> AxisMap | None:
        valid = lay.units >= 0
        if not valid.any():
            return None
        reps = self.labels[np.maximum(lay.units, 0)]
        gid = np.where(valid, self.group_of[reps], -1)
        pos = self.pos_in_group[reps]
        breaks = np.ones(len(gid), dtype=bool)
        breaks[1:] = (gid[1:] != gid[:-1]) | (pos[1:] != pos[:-1] + 1)
        starts = np.flatnonzero(breaks)
        ends = np.append(starts[1:], len(gid))
        segments = tuple(
            Segment(group=int(gid[s]), start=int(pos[s]), stop=int(pos[s] + e - s), offset=int(s))
            for s, e in zip(starts, ends, strict=False)
            if gid[s] >= 0
        )
        return AxisMap(tensor=tensor, axis=lay.axis, size=lay.size, segments=segments, repeat=lay.repeat,
                       tile=lay.tile)
