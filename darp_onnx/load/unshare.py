"""Un-sharing constants: one copy per reader, so slicing it for one consumer cannot hurt another.

torch's TorchScript exporter stores identical initializers once (zero biases, equal scales) and hands
them to several nodes, often through `Identity`. The channel analysis freezes a constant that several
nodes read ("constant ... is also read by ..."). Here an `Identity` of a constant becomes a constant of
its own, and a small float vector read by several nodes is copied per reader. Large constants (tied
embeddings) and weight matrices of any size (ALBERT's layer run four times) stay shared: copying them
would grow the written model (an ALBERT tagger pruned to half its MACs: 418,960 -> 547,858 parameters);
shared, the channel analysis couples their readers, which are pruned alike.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
               onnx.TensorProto.BFLOAT16}
MAX_COPIED_ELEMENTS = 1 << 16


def _fresh(name: str, taken: set[str]) -> str:
    k = 1
    candidate = name
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    for node in graph.node:
        names.update(node.output)
        names.add(node.name)
    return names


def _copied_per_reader(tensor: onnx.TensorProto) -> bool:
    """A shared constant each reader gets a copy of: a small scalar or vector (biases, scales, also as
    [1, C, 1, 1]), not a matrix (two axes wider than 1)."""
    return sum(d > 1 for d in tensor.dims) <= 1 and int(np.prod(tensor.dims)) <= MAX_COPIED_ELEMENTS


def _fold_constant_identities(graph: onnx.GraphProto) -> int:
    """`Identity(initializer)` -> an initializer named after the Identity's output (graph outputs kept). A
    large initializer handed to several readers this way (a weight-shared transformer layer run 8 times) is
    not copied: its readers read it directly, so it stays one tensor (copied, an 85 MB model pruned to half
    its MACs was written as 322 MB, its parameters counted once per use)."""
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded = [n for n in graph.node if n.op_type == "Identity" and n.domain in ("", "ai.onnx")
              and n.input and n.input[0] in inits and n.output[0] not in outputs]
    identities_of = defaultdict(list)
    for node in folded:
        identities_of[node.input[0]].append(node)
    renamed: dict[str, str] = {}
    for source, nodes in identities_of.items():
        shared = len(nodes) > 1 and not _copied_per_reader(inits[source])
        for node in nodes:
            if shared:
                renamed[node.output[0]] = source
            else:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[source])
                copy.name = node.output[0]
                graph.initializer.append(copy)
            graph.node.remove(node)
    for node in graph.node:
        for pos, name in enumerate(node.input):
            if name in renamed:
                node.input[pos] = renamed[name]
    still_read = {name for n in graph.node for name in n.input} | outputs
    for source in set(identities_of) - still_read:
        graph.initializer.remove(inits[source])
    return len(folded)


def _copy_shared(graph: onnx.GraphProto, copied=lambda tensor, readers: _copied_per_reader(tensor)) -> int:
    """A float initializer read by several nodes (or twice by one) and `copied(tensor, [(node, input index)])`:
    every extra read gets its own copy."""
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for pos, name in enumerate(node.input):
            if name in inits:
                readers[name].append((node, pos))
    outputs = {o.name for o in graph.output}
    taken = _all_names(graph)
    copies = 0
    for name, uses in readers.items():
        tensor = inits[name]
        if len(uses) < 2 or name in outputs or tensor.data_type not in FLOAT_TYPES or not copied(tensor, uses):
            continue
        array = numpy_helper.to_array(tensor)
        for node, pos in uses[1:]:
            fresh = _fresh(f"{name}__{node.name or node.op_type}", taken)
            graph.initializer.append(numpy_helper.from_array(array.copy(), fresh))
            node.input[pos] = fresh
            copies += 1
    return copies


def unshare_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with constant Identities folded, small shared float constants and computed shape
    vectors copied per reader; also the number of constants and nodes added."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    from darp_onnx.load.unshare_shapes import unshare_shape_vectors  # it imports this module's helpers

    folded = _fold_constant_identities(out.graph)
    copied = _copy_shared(out.graph) + unshare_shape_vectors(out.graph)
    return out, folded + copied
