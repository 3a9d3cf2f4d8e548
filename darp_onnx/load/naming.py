"""Unique node names: the analysis, the rewriter and the reports refer to nodes by name.

Exporters leave names empty (paddle2onnx's Constant nodes) or repeat them; existing unique names are
kept and the others get `<OpType>_<index>` (made unique), so a message can point at the node.
"""

from __future__ import annotations

from collections import Counter

import onnx


def has_unique_names(model: onnx.ModelProto) -> bool:
    names = [n.name for n in model.graph.node]
    return "" not in names and len(set(names)) == len(names)


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose nodes all have unique, non-empty names (unique names are kept)."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    taken = Counter(n.name for n in named.graph.node)
    used: set[str] = set()
    for i, node in enumerate(named.graph.node):
        if not node.name or taken[node.name] > 1 or node.name in used:
            base = f"{node.op_type}_{i}"
            name, k = base, 1
            while name in taken or name in used:
                k += 1
                name = f"{base}_{k}"
            node.name = name
        used.add(node.name)
    return named
