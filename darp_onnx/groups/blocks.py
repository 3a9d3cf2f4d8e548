"""Channels pruned in blocks: torch's GroupNorm normalises groups of C/G channels together (exported as
Reshape [N, G, -1] -> InstanceNormalization -> Reshape back), so a channel can only go with its whole
group. A pass of the analysis that meets such a split asks for blocks (`Tracer.block_requests`); the
sources of those channels (Conv, Gemm, MatMul outputs coupled with them) then make one unit per block of k
channels in the next pass, and every tensor downstream carries them with `repeat` k. Diffusion UNets, VAE
decoders and FCOS-style heads normalise this way.
"""

from __future__ import annotations

from math import lcm

import numpy as np
import onnx

from darp_onnx.groups.partition import components
from darp_onnx.groups.tracer import Tracer

SOURCE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
MAX_PASSES = 4  # each pass may find more sources coupled with the blocks (a FiLM Linear after a GroupNorm)


def block_sources(model: onnx.ModelProto, tracer: Tracer) -> dict[str, int]:
    """Source node -> channels per block, for the sources whose channels a request of this pass covers whole,
    each block within one source: a GroupNorm over a Concat whose groups straddle two sources (96 channels
    in groups of 3 from 64 + 32) asks for nothing."""
    if not tracer.block_requests:
        return {}
    labels = components(tracer.count, tracer.edges)
    requests = [(_positions(labels[units[units >= 0]]), k) for units, k in tracer.block_requests]
    found: dict[str, int] = {}
    for node in model.graph.node:
        lay = tracer.layouts.get(node.output[0]) if node.op_type in SOURCE_OPS and node.output else None
        if lay is None or lay.tile != 1 or lay.repeat != 1:
            continue
        own = labels[lay.units]
        ks = [k for positions, k in requests if _whole_blocks(own, positions, k)]
        if ks and lay.size % lcm(*ks) == 0:
            found[node.name] = lcm(*ks)
    return found


def _positions(comps: np.ndarray) -> dict[int, int]:
    positions: dict[int, int] = {}
    for i, c in enumerate(comps.tolist()):
        positions.setdefault(c, i)
    return positions


def _whole_blocks(own: np.ndarray, positions: dict[int, int], k: int) -> bool:
    """Whether the request (component -> position on its axis) covers some of a source's channels (component
    labels `own`), and each block of k of them that it covers lands whole on one block of the request's."""
    if len(own) % k:
        return False
    at = np.array([positions.get(c, -1) for c in own.tolist()]).reshape(-1, k)
    covered = (at >= 0).all(axis=1)
    if not covered.any() or ((at >= 0).any(axis=1) & ~covered).any():
        return False
    blocks = at[covered]
    return bool((blocks[:, 0] % k == 0).all() and (np.diff(blocks, axis=1) == 1).all())


def merged(blocks: dict[str, int], found: dict[str, int]) -> dict[str, int]:
    return {name: lcm(blocks.get(name, 1), found.get(name, 1)) for name in {*blocks, *found}}
