"""Graph surgery by plain proto edits: dropping residual branches and removing dead nodes."""

from __future__ import annotations

import onnx
from onnx import helper

from darp_onnx.groups.model import ChannelAnalysis


def drop_branches(model: onnx.ModelProto, analysis: ChannelAnalysis, masks) -> list[str]:
    """For every dropped branch, y = x + F(x) becomes y = x: consumers of y read x (an Identity keeps the
    name when y is a graph output). F's nodes die and go in `remove_dead_nodes`. Renames are collected
    and applied in one pass over the graph, so the cost stays linear in the graph size."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    by_name = {n.name: n for n in graph.node}
    dropped: list[str] = []
    removed: set[str] = set()
    alias: dict[str, str] = {}  # removed Add output -> the tensor that now stands for it
    for branch in analysis.branches:
        if masks[branch.group].any():
            continue
        add = by_name.get(branch.add_node)
        if add is None or add.name in removed:
            continue
        y, skip = add.output[0], _resolve(alias, branch.skip_input)
        if y in outputs:
            add.CopyFrom(helper.make_node("Identity", [skip], [y], name=add.name))
        else:
            alias[y] = skip
            removed.add(add.name)
        dropped.append(branch.add_node)
    if alias:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in alias:
                    node.input[i] = _resolve(alias, name)
        keep = [n for n in graph.node if n.name not in removed]
        del graph.node[:]
        graph.node.extend(keep)
    return dropped


def _resolve(alias: dict[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


def remove_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes none of whose outputs is used, then initializers nobody reads."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(n for n in node.input if n)
    keep.reverse()
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
    dropped = {i.name for i in graph.initializer if i.name not in needed}
    if dropped:
        inits = [i for i in graph.initializer if i.name in needed]
        del graph.initializer[:]
        graph.initializer.extend(inits)
        for vi in [i for i in graph.input if i.name in dropped]:
            graph.input.remove(vi)
