"""Integer inputs that index an embedding table: how many rows they may pick.

Synthetic data for integer inputs used to be 0 or 1 everywhere: for a BERT-style encoder that is a
sentence of [PAD] and one other token, which teaches a data-free search nothing about real text. An
input that reaches the indices of a Gather from a constant table (through ops that keep values) may take
any row of it, so synthetic ids are drawn from all of them.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

from darp_onnx.groups.const_views import VIEW_OPS  # ops that keep the values (and their order)

# ops whose outputs hold some of their data input's values: attacut's [1, 2, seq] input is split by two
# Gathers (axis 1) into character and syllable ids, each indexing its own table
SELECTING_OPS = ("Gather", "Slice", "Split")


def index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Input name -> rows of the smallest constant table it indexes (Gather's data, on its axis)."""
    graph = model.graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tables[node.output[0]] = list(node.attribute[0].t.dims)
    readers = defaultdict(list)
    for node in graph.node:
        for position, name in enumerate(node.input):
            readers[name].append((node, position))
    bounds = {}
    for value in graph.input:
        if value.name in tables:
            continue
        rows = [r for r in _gathered_rows(value.name, readers, tables, set()) if r > 0]
        if rows:
            bounds[value.name] = min(rows)
    return bounds


def _gathered_rows(name: str, readers, tables, seen: set[str]) -> list[int]:
    if name in seen:
        return []
    seen.add(name)
    rows = []
    for node, position in readers.get(name, []):
        if node.op_type == "Gather" and position == 1 and node.input[0] in tables:
            dims = tables[node.input[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if dims:
                rows.append(int(dims[axis % len(dims)]))
        elif (node.op_type in VIEW_OPS or node.op_type in SELECTING_OPS) and position == 0:
            for output in node.output:
                rows.extend(_gathered_rows(output, readers, tables, seen))
    return rows
