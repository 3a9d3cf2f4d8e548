"""Un-sharing computed shape vectors: one copy of the producing Concat per reader.

torch's dynamo exporter computes a Reshape target such as [batch, seq, num_heads, head_dim] once and
hands it to every attention layer's Q, K and V Reshapes. Its num_heads element is then one literal for
all layers, so pruning heads would have to remove the same number from every layer (the analysis
couples them). A copy per reader lets each layer keep its own number of heads; the copies compute the
same values, so the model is unchanged.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

from darp_onnx.load.unshare import _all_names, _fresh

INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def _int_vectors(graph: onnx.GraphProto) -> set[str]:
    """Tensors shape inference typed as 1-D integer vectors."""
    found = set()
    for vi in [*graph.value_info, *graph.output]:
        ttype = vi.type.tensor_type
        if ttype.elem_type in INT_TYPES and ttype.HasField("shape") and len(ttype.shape.dim) == 1:
            found.add(vi.name)
    return found


def unshare_shape_vectors(graph: onnx.GraphProto) -> int:
    """Every extra reader of an integer-vector Concat gets its own copy of it (placed before the reader);
    returns the number of copies."""
    vectors = _int_vectors(graph)
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    producers = {}
    for index, node in enumerate(graph.node):
        if node.op_type == "Concat" and node.domain in ("", "ai.onnx") and node.output[0] in vectors:
            producers[node.output[0]] = node
        for pos, name in enumerate(node.input):
            if name in producers:
                readers[name].append((index, pos))
    taken = _all_names(graph)
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
    if not inserts:
        return 0
    nodes = []
    for index, node in enumerate(graph.node):
        nodes.extend(inserts.get(index, ()))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return sum(len(v) for v in inserts.values())
