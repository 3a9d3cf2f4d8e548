"""Un-sharing computed shape vectors and broadcasts: one copy of each producing node per reader.

torch's exporters compute a Reshape target such as [batch, seq, num_heads, head_dim] once, or an
attention mask expanded to every head once, and hand it to every attention layer. Its num_heads element
is then one literal for all layers, so pruning heads would have to remove the same heads from every
layer (the analysis couples them). A copy per reader, up the chain to the node that reads the literal,
lets each layer keep its own heads; the copies compute the same values, so the model is unchanged.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from darp_onnx.load.unshare import FLOAT_TYPES, _all_names, _copy_shared, _fresh

INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
# ops that carry the elements of a shape vector (darp_onnx.groups.shape_values keeps their literals' sources)
VECTOR_OPS = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Concat", "Gather", "Slice",
              "Where"}
MAX_PASSES = 8
TABLE_VIEW_OPS = {"Transpose", "Unsqueeze", "Squeeze", "Identity", "Cast", "Reshape"}
MAX_TABLE_ELEMENTS = 4096  # relative position buckets x heads (T5: 32 x 16)


def _int_vectors(graph: onnx.GraphProto) -> set[str]:
    """Tensors shape inference typed as 1-D integer vectors."""
    found = set()
    for vi in [*graph.value_info, *graph.output]:
        ttype = vi.type.tensor_type
        if ttype.elem_type in INT_TYPES and ttype.HasField("shape") and len(ttype.shape.dim) == 1:
            found.add(vi.name)
    return found


def _small_table(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in FLOAT_TYPES and len(tensor.dims) == 2 and int(np.prod(tensor.dims)) <= MAX_TABLE_ELEMENTS


def _table_rows(graph: onnx.GraphProto) -> set[str]:
    """Outputs of Gathers from a small float table and of the views after them (MPNet's and T5's relative
    position bias, [buckets, heads] gathered once and added to every layer's scores): copied per reader like
    shape vectors, so each layer keeps its own heads, and the table with them (`_read_as_table`)."""
    tables = {t.name for t in graph.initializer if _small_table(t)}
    rows: set[str] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1 or not node.input:
            continue
        if (node.op_type == "Gather" and node.input[0] in tables) or (
                node.op_type in TABLE_VIEW_OPS and node.input[0] in rows):
            rows.add(node.output[0])
    return rows


def _copy_pass(graph: onnx.GraphProto, vectors: set[str], taken: set[str]) -> int:
    outputs = {o.name for o in graph.output}
    rows = _table_rows(graph)
    producers = {}
    readers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, node in enumerate(graph.node):
        for pos, name in enumerate(node.input):
            if name in producers:
                readers[name].append((index, pos))
        vector = node.op_type in VECTOR_OPS and len(node.output) == 1 and node.output[0] in vectors
        if node.domain in ("", "ai.onnx") and (vector or node.op_type == "Expand" or node.output[0] in rows):
            producers[node.output[0]] = node
    inserts: dict[int, list[onnx.NodeProto]] = defaultdict(list)
    for name, uses in readers.items():
        if len(uses) < 2 or name in outputs:
            continue
        source = producers[name]
        for index, pos in uses[1:]:
            copy = onnx.NodeProto()
            copy.CopyFrom(source)
            copy.name = _fresh(f"{source.name}__copy", taken)
            copy.output[0] = _fresh(f"{name}__copy", taken)
            graph.node[index].input[pos] = copy.output[0]
            inserts[index].append(copy)
    if inserts:
        nodes = []
        for index, node in enumerate(graph.node):
            nodes.extend(inserts.get(index, ()))
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
    return sum(len(v) for v in inserts.values())


def unshare_shape_vectors(graph: onnx.GraphProto) -> int:
    """Every extra reader of an Expand or of a node computing an integer vector gets its own copy of it
    (placed before the reader), repeated up the chain; returns the number of copies."""
    vectors = _int_vectors(graph)
    taken = _all_names(graph)
    total = 0
    for _ in range(MAX_PASSES):
        copies = _copy_pass(graph, vectors, taken)
        total += copies
        if not copies:
            break
    return total + _copy_shared(graph, _read_as_table)  # each copied Gather gets its own table too


def _read_as_table(tensor: onnx.TensorProto, readers: list[tuple[onnx.NodeProto, int]]) -> bool:
    return _small_table(tensor) and all(node.op_type == "Gather" and pos == 0 for node, pos in readers)
