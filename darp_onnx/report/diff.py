"""Compare two ONNX graphs (typically a model and its pruned copy) node by node.

Nodes are matched by name first (same name and op type), then the rest by position and op type in
topological order (a longest-common-subsequence alignment of their op types). Unmatched nodes of the
first model are "removed", of the second "added". Matched nodes whose weight tensors changed shape are
"resized"; differing attributes are listed. Totals come from `darp_onnx.cost.count_graph`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from difflib import SequenceMatcher
from typing import Any

import onnx
from onnx import helper

from darp_onnx.cost import GraphCount, count_graph, count_graph_params
from darp_onnx.cost.count import weight_tensors
from darp_onnx.errors import BadInputError
from darp_onnx.load.attributes import int_attribute
from darp_onnx.report.model import (
    AttributeChange,
    Change,
    Channels,
    GraphDiff,
    LayerRow,
    NodeRef,
    ResizedNode,
    WeightChange,
)

__all__ = ["GraphDiff", "diff_models"]

WEIGHT_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def diff_models(
    a: onnx.ModelProto,
    b: onnx.ModelProto,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    labels: tuple[str, str] = ("before", "after"),
) -> GraphDiff:
    """What changed from model `a` to model `b`. `input_shapes` (input name -> dims) fixes symbolic
    dims for the MACs count; it applies to both models."""
    diff = GraphDiff(label_before=labels[0], label_after=labels[1])
    diff.input_shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    order_a, order_b = _topo_order(a.graph), _topo_order(b.graph)
    pairs, positional = _match(a.graph, b.graph, order_a, order_b)
    diff.matched_by_name = len(pairs) - len(positional)
    matched_a = {i for i, _ in pairs}
    matched_b = {j for _, j in pairs}
    diff.removed = [_ref(a.graph, i) for i in order_a if i not in matched_a]
    diff.added = [_ref(b.graph, j) for j in order_b if j not in matched_b]

    count_a = _count(a, diff.input_shapes, labels[0], diff.warnings)
    count_b = _count(b, diff.input_shapes, labels[1], diff.warnings)
    weights_a, weights_b = _weights(a), _weights(b)
    for i, j in pairs:
        na, nb = a.graph.node[i], b.graph.node[j]
        if (i, j) in positional:
            diff.matched_by_position.append((_display(na, i), _display(nb, j)))
        changes = _weight_changes(na, nb, weights_a, weights_b)
        channels = _channels_pair(na, nb, weights_a, weights_b)
        if changes:
            diff.resized.append(
                ResizedNode(_display(nb, j), _display(na, i), nb.op_type, changes, channels)
            )
        diff.attribute_changes.extend(_attribute_changes(na, nb, _display(nb, j)))
        if channels is not None:
            diff.layers.append(
                LayerRow(
                    name=_display(nb, j),
                    op_type=nb.op_type,
                    channels_before=channels.out_before,
                    channels_after=channels.out_after,
                    in_channels_before=channels.in_before,
                    in_channels_after=channels.in_after,
                    macs_before=_node_macs(count_a, na, i),
                    macs_after=_node_macs(count_b, nb, j),
                    weight=nb.input[1] if len(nb.input) > 1 else None,
                )
            )

    diff.nodes = Change(len(a.graph.node), len(b.graph.node))
    ops_a = Counter(n.op_type for n in a.graph.node)
    ops_b = Counter(n.op_type for n in b.graph.node)
    diff.op_types = {op: Change(ops_a.get(op, 0), ops_b.get(op, 0)) for op in sorted(ops_a | ops_b)}
    diff.macs = Change(count_a.macs if count_a else None, count_b.macs if count_b else None)
    diff.params = Change(count_a.params if count_a else count_graph_params(a),
                         count_b.params if count_b else count_graph_params(b))
    diff.serialized_bytes = Change(a.ByteSize(), b.ByteSize())
    return diff


def _display(node: onnx.NodeProto, index: int) -> str:
    """The name reports use (and `count_graph` keys MACs by): the node name, or '#index'."""
    return node.name or f"#{index}"


def _ref(graph: onnx.GraphProto, index: int) -> NodeRef:
    node = graph.node[index]
    return NodeRef(_display(node, index), node.op_type, index)


def _topo_order(graph: onnx.GraphProto) -> list[int]:
    """Node indices in topological order, keeping the stored order wherever the edges allow it."""
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer.setdefault(out, i)
    deps: list[set[int]] = []
    users: list[list[int]] = [[] for _ in graph.node]
    for i, node in enumerate(graph.node):
        found = {producer[name] for name in node.input if name in producer and producer[name] != i}
        deps.append(found)
        for p in found:
            users[p].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(graph.node):  # a cycle (invalid graph): keep the stored order for the rest
        seen = set(order)
        order.extend(i for i in range(len(graph.node)) if i not in seen)
    return order


def _match(
    ga: onnx.GraphProto, gb: onnx.GraphProto, order_a: list[int], order_b: list[int]
) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Pairs (index in a, index in b) sorted by a's topological order, and the subset matched by
    position (the rest matched by name)."""
    names_a = Counter(n.name for n in ga.node if n.name)
    names_b = Counter(n.name for n in gb.node if n.name)
    index_b = {n.name: j for j, n in enumerate(gb.node) if n.name and names_b[n.name] == 1}
    pairs: list[tuple[int, int]] = []
    for i, node in enumerate(ga.node):
        if not node.name or names_a[node.name] != 1:
            continue
        j = index_b.get(node.name)
        if j is not None and gb.node[j].op_type == node.op_type:
            pairs.append((i, j))
    done_a = {i for i, _ in pairs}
    done_b = {j for _, j in pairs}
    rest_a = [i for i in order_a if i not in done_a]
    rest_b = [j for j in order_b if j not in done_b]
    matcher = SequenceMatcher(
        None, [ga.node[i].op_type for i in rest_a], [gb.node[j].op_type for j in rest_b], autojunk=False
    )
    positional = {
        (rest_a[block.a + k], rest_b[block.b + k])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    }
    rank = {i: r for r, i in enumerate(order_a)}
    pairs = sorted([*pairs, *positional], key=lambda p: rank[p[0]])
    return pairs, positional


def _weights(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Dims of every constant tensor (initializers of any type, Constant node values)."""
    found = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    found.update(weight_tensors(model))
    return found


def _weight_changes(
    na: onnx.NodeProto, nb: onnx.NodeProto, wa: dict[str, tuple[int, ...]], wb: dict[str, tuple[int, ...]]
) -> list[WeightChange]:
    changes = []
    for k, (name_a, name_b) in enumerate(zip(na.input, nb.input, strict=False)):
        if name_a in wa and name_b in wb and wa[name_a] != wb[name_b]:
            changes.append(WeightChange(k, name_a, name_b, wa[name_a], wb[name_b]))
    return changes


def _group(node: onnx.NodeProto) -> int:
    return int_attribute(node, "group", 1)


def _trans_b(node: onnx.NodeProto) -> bool:
    return bool(int_attribute(node, "transB", 0))


def layer_channels(node: onnx.NodeProto, weights: Mapping[str, tuple[int, ...]]) -> tuple[int, int] | None:
    """(in, out) channels of a weight layer, read off its weight tensor; None for other nodes."""
    if node.op_type not in WEIGHT_LAYER_OPS or len(node.input) < 2:
        return None
    w = weights.get(node.input[1])
    if w is None or len(w) < 2:
        return None
    if node.op_type == "Conv":
        return w[1] * _group(node), w[0]
    if node.op_type == "ConvTranspose":
        return w[0], w[1] * _group(node)
    if node.op_type == "Gemm":
        return (w[1], w[0]) if _trans_b(node) else (w[0], w[1])
    return w[-2], w[-1]  # MatMul with a constant right-hand side


def _channels_pair(
    na: onnx.NodeProto, nb: onnx.NodeProto, wa: dict[str, tuple[int, ...]], wb: dict[str, tuple[int, ...]]
) -> Channels | None:
    ca, cb = layer_channels(na, wa), layer_channels(nb, wb)
    if ca is None and cb is None:
        return None
    return Channels(
        in_before=ca[0] if ca else None,
        in_after=cb[0] if cb else None,
        out_before=ca[1] if ca else None,
        out_after=cb[1] if cb else None,
    )


def attribute_value(attr: onnx.AttributeProto) -> Any:
    """A JSON-friendly rendering of an attribute's value (tensors and graphs are summarised)."""
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return f"tensor{list(value.dims)}"
    if isinstance(value, onnx.GraphProto):
        return f"graph '{value.name}' ({len(value.node)} nodes)"
    if isinstance(value, list | tuple):
        return [attribute_value_item(v) for v in value]
    return value


def attribute_value_item(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return f"tensor{list(value.dims)}"
    if isinstance(value, onnx.GraphProto):
        return f"graph '{value.name}'"
    return value


def _attribute_changes(na: onnx.NodeProto, nb: onnx.NodeProto, name: str) -> list[AttributeChange]:
    attrs_a = {attr.name: attr for attr in na.attribute}
    attrs_b = {attr.name: attr for attr in nb.attribute}
    changes = []
    for key in sorted(attrs_a.keys() | attrs_b.keys()):
        x, y = attrs_a.get(key), attrs_b.get(key)
        if x is not None and y is not None:
            if x.SerializeToString(deterministic=True) == y.SerializeToString(deterministic=True):
                continue
        changes.append(
            AttributeChange(
                node=name,
                op_type=nb.op_type,
                attribute=key,
                before=attribute_value(x) if x is not None else None,
                after=attribute_value(y) if y is not None else None,
            )
        )
    return changes


def _count(
    model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]], label: str, warnings: list[str]
) -> GraphCount | None:
    """The model's count, or None (with a warning) when its shapes are too unknown to count MACs."""
    try:
        return count_graph(model, input_shapes or None)
    except (BadInputError, ValueError) as exc:
        warnings.append(f"{label}: MACs not counted ({exc})")
        return None


def _node_macs(count: GraphCount | None, node: onnx.NodeProto, index: int) -> int | None:
    if count is None:
        return None
    return count.node_macs.get(_display(node, index))



