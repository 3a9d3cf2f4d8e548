"""Nodes put in topological order: ONNX requires it, onnxruntime does not.

Some exporters write graphs whose nodes are out of order (@imgly/background-removal's ISNet: the input's
Cast is the 643rd node, read by the first). onnxruntime sorts such graphs itself and runs them, so a user
cannot tell anything is wrong; the tool sorts them too instead of refusing them. The sort is stable (nodes
keep their order where their inputs allow it) and counts the names a node's sub-graphs read from the outer
scope as its inputs. A graph with a cycle is left as it is, and an input that nothing produces is left for
`check_edges` to name.
"""

from __future__ import annotations

import heapq

import onnx


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [g for attr in node.attribute
            for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs))]


def _subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a sub-graph reads from its enclosing scopes."""
    local = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        reads |= node_reads(node)
        local.update(node.output)
    return reads - local


def node_reads(node: onnx.NodeProto) -> set[str]:
    """The names a node reads: its inputs and what its sub-graphs read from outside them."""
    names = {name for name in node.input if name}
    for sub in _subgraphs(node):
        names |= _subgraph_reads(sub)
    return names


def topological_order(graph: onnx.GraphProto) -> list[int] | None:
    """Indices of the graph's nodes in a stable topological order; None when there is none (a cycle)."""
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting: list[set[int]] = []
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        needs = {producer[name] for name in node_reads(node) if name not in available and name in producer}
        needs.discard(i)  # a name nothing produces is left for `check_edges` to name
        waiting.append(needs)
        for j in needs:
            readers.setdefault(j, []).append(i)
    ready = [i for i, needs in enumerate(waiting) if not needs]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in readers.get(i, ()):
            waiting[k].discard(i)
            if not waiting[k]:
                heapq.heappush(ready, k)
    return order if len(order) == len(graph.node) else None


def out_of_order(graph: onnx.GraphProto) -> bool:
    """Whether sorting would move a node."""
    order = topological_order(graph)
    return order is not None and order != list(range(len(graph.node)))


def sort_nodes(graph: onnx.GraphProto) -> bool:
    """Put the graph's nodes in topological order, in place (the caller's freshly loaded graph); whether any
    node moved. A graph in order already, or one that cannot be ordered, is left as it is."""
    order = topological_order(graph)
    if order is None or order == list(range(len(graph.node))):
        return False
    nodes = []
    for i in order:
        node = onnx.NodeProto()
        node.CopyFrom(graph.node[i])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return True
