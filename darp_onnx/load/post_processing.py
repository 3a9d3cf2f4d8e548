"""Post-processing the proxy cannot run, kept as it is: the network before it is pruned.

Detectors and recognisers are often exported with their decoding in the graph: NonMaxSuppression and the
Gathers that read its indices, a TopK over scores, a Loop that runs NMS class by class, an ai.onnx.ml ZipMap.
None of it has weights, and none of it can be trained through. Where every node the proxy cannot convert sits
in such a tail (the nodes after it, none of them a layer with weights), the model splits in two: the network,
whose outputs become the tensors the tail reads (the "cut"; like any graph output they keep their shapes), and
the tail, which is written back unchanged after the pruned network. Where a node the proxy cannot convert comes
before layers with weights (a GridSample in a spatial transformer), there is no such split and the model is
refused as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto

WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN", "Attention"}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


@dataclass(frozen=True)
class PostProcessing:
    """The tail of a split model and what it needs to be written back."""

    original: onnx.ModelProto  # the whole model as loaded
    nodes: tuple[onnx.NodeProto, ...]  # the tail's nodes, in graph order
    cut: tuple[str, ...]  # network tensors the tail reads: outputs of the network while it is pruned
    blocking: tuple[str, ...]  # the nodes the proxy cannot convert, 'name (op)'
    network_inputs: tuple[str, ...] = ()  # the inputs the network reads (the others only the tail reads)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # every input's, for the whole check

    def describe(self) -> str:
        first = ", ".join(self.blocking[:3]) + (f" and {len(self.blocking) - 3} more" if len(self.blocking) > 3
                                                 else "")
        cut = ", ".join(self.cut[:4]) + (" ..." if len(self.cut) > 4 else "")
        return (f"post-processing kept as it is: {first} cannot be trained through; with the "
                f"{len(self.nodes) - len(self.blocking)} other nodes of the post-processing (no layer with weights) "
                f"it is written back unchanged after the pruned network, which is fitted and checked on the tensors "
                f"it hands them ({cut}), kept at their shapes")


def node_label(node: onnx.NodeProto, index: int) -> str:
    """'name', or #index for an unnamed node (numbered as the graph lists it)."""
    return f"'{node.name}'" if node.name else f"#{index} (unnamed)"


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's sub-graphs (If, Loop, Scan bodies) read from the outer scope."""
    reads: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            inner = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for sub in graph.node:
                inner.update(sub.output)
            for sub in graph.node:
                reads.update(n for n in [*sub.input, *subgraph_reads(sub)] if n and n not in inner)
    return reads


def node_reads(node: onnx.NodeProto) -> set[str]:
    return {n for n in node.input if n} | subgraph_reads(node)


def _tail_indices(model: onnx.ModelProto, blocking: set[int]) -> set[int]:
    """The blocking nodes and every node after them (forward closure), then the nodes whose outputs only the
    tail reads and that compute no floats (indices, shapes) or nothing from the inputs' values (constants,
    shape arithmetic): those go with the tail, so the cut runs through feature tensors the network can be fitted
    on, and a Shape the tail reads sees the kept shape of its tensor."""
    nodes, outputs = list(model.graph.node), {o.name for o in model.graph.output}
    tail, produced = set(), set()
    for i, node in enumerate(nodes):
        if i in blocking or node_reads(node) & produced:
            tail.add(i)
            produced.update(node.output)
    valued = {i.name for i in model.graph.input}  # tensors whose values depend on the inputs' values
    for node in nodes:
        if node.op_type not in SHAPE_OPS and node_reads(node) & valued:
            valued.update(node.output)
    infos = _value_infos(model)
    readers: dict[str, set[int]] = {}
    for i, node in enumerate(nodes):
        for name in node_reads(node):
            readers.setdefault(name, set()).add(i)
    moved = True
    while moved:
        moved = False
        for i in range(len(nodes) - 1, -1, -1):
            node = nodes[i]
            if i in tail or any(o in outputs for o in node.output):
                continue
            consumers = set().union(*(readers.get(o, set()) for o in node.output))
            floats = node.op_type not in SHAPE_OPS and any(_is_float(infos, o) for o in node.output)
            if consumers and consumers <= tail and (not node_reads(node) & valued or not floats):
                tail.add(i)
                moved = True
    return tail


SHAPE_OPS = {"Shape", "Size"}  # outputs that depend on a tensor's shape only


def constant_tensors(model: onnx.ModelProto) -> set[str]:
    """Initializers (not fed as inputs) and what nodes compute from them alone: a weight behind a Cast or a
    DequantizeLinear is one too."""
    constants = {t.name for t in model.graph.initializer} - {i.name for i in model.graph.input}
    for node in model.graph.node:
        if node_reads(node) <= constants:
            constants.update(node.output)
    return constants


def weighted_layer(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto], constants: set[str]) -> bool:
    """A layer with weights: a Conv, Gemm, MatMul, recurrent layer... with a constant operand (a matrix where
    it is an initializer)."""
    return node.op_type in WEIGHTED_OPS and any(
        (len(initializers[n].dims) >= 2 if n in initializers else n in constants) for n in node.input if n)


def split_post_processing(model: onnx.ModelProto, convertible) -> tuple[onnx.ModelProto, PostProcessing | None,
                                                                         str | None]:
    """(the network, its tail, None) where the nodes `convertible(node)` rejects all sit in a weight-free tail;
    (model, None, None) where every node converts; (model, None, why not) where there is no such split."""
    graph = model.graph
    nodes = list(graph.node)
    blocking = {i for i, n in enumerate(nodes) if not convertible(n)}
    if not blocking:
        return model, None, None
    initializers = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    tail = _tail_indices(model, blocking)
    constants = constant_tensors(model)
    weighted = next((i for i in sorted(tail) if weighted_layer(nodes[i], initializers, constants)), None)
    if weighted is not None:
        return model, None, (f"and a layer with weights, {nodes[weighted].op_type} node "
                             f"{node_label(nodes[weighted], weighted)}, comes after it")
    body_nodes = [n for i, n in enumerate(nodes) if i not in tail]
    tail_nodes = [n for i, n in enumerate(nodes) if i in tail]
    made = {o for n in body_nodes for o in n.output}
    cut = _ordered(n for node in tail_nodes for n in sorted(node_reads(node), key=_order_in(tail_nodes))
                   if n in made)
    infos = _value_infos(model)
    if not any(_is_float(infos, n) for n in cut):
        return model, None, "and no network with float outputs comes before it"
    cut = tuple(c for c in cut if c not in outputs)
    network = network_model(model, body_nodes, cut)
    blockers = tuple(f"{nodes[i].op_type} node {node_label(nodes[i], i)}" for i in sorted(blocking))
    post = PostProcessing(original=model, nodes=tuple(tail_nodes), cut=cut, blocking=blockers,
                          network_inputs=tuple(i.name for i in network.graph.input))
    return network, post, None


def _order_in(nodes: list[onnx.NodeProto]):
    """Sort key: where a name first appears among the nodes' inputs (a stable cut order)."""
    first: dict[str, int] = {}
    for k, node in enumerate(nodes):
        for j, name in enumerate(node.input):
            first.setdefault(name, k * 1000 + j)
    return lambda name: first.get(name, 10**9)


def _ordered(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    graph = model.graph
    return {v.name: v for v in [*graph.input, *graph.value_info, *graph.output]}


def _is_float(infos: dict[str, onnx.ValueInfoProto], name: str) -> bool:
    """A float tensor, or one of unknown type."""
    info = infos.get(name)
    return info is None or info.type.tensor_type.elem_type in FLOAT_TYPES


def _cut_info(name: str, infos: dict[str, onnx.ValueInfoProto]) -> onnx.ValueInfoProto:
    """The cut tensor's type as an output. Where shape inference gave not even its rank, a scalar's empty shape
    stands in (onnx requires a shape on a graph output; onnxruntime only warns when the run's differs)."""
    info = infos.get(name)
    if info is not None and info.type.tensor_type.HasField("shape"):
        return copy.deepcopy(info)
    elem = info.type.tensor_type.elem_type if info is not None else TensorProto.FLOAT
    return onnx.helper.make_tensor_value_info(name, elem or TensorProto.FLOAT, [])


def _inferred_infos(model: onnx.ModelProto, names: tuple[str, ...]) -> dict[str, onnx.ValueInfoProto]:
    """Value infos, from onnx's shape inference where the model lacks some of `names` (a model not loaded
    through load_model)."""
    infos = _value_infos(model)
    if all(n in infos for n in names):
        return infos
    try:
        return {**_value_infos(onnx.shape_inference.infer_shapes(model)), **infos}
    except Exception:  # inference fails on this graph: the types stay unknown
        return infos


def network_model(model: onnx.ModelProto, body_nodes: list[onnx.NodeProto], cut: tuple[str, ...]
                  ) -> onnx.ModelProto:
    """The model of the network alone: its nodes, the inputs and initializers they read, the original outputs
    it computes, then the cut tensors as outputs."""
    network = onnx.ModelProto()
    network.CopyFrom(model)
    graph = network.graph
    reads = set().union(*(node_reads(n) for n in body_nodes)) if body_nodes else set()
    made = {o for n in body_nodes for o in n.output}
    infos = _inferred_infos(model, cut)
    del graph.node[:]
    graph.node.extend(copy.deepcopy(n) for n in body_nodes)
    keep_inputs = [i for i in model.graph.input if i.name in reads]
    del graph.input[:]
    graph.input.extend(copy.deepcopy(i) for i in keep_inputs)
    kept_inits = [t for t in model.graph.initializer if t.name in reads]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    outputs = [o for o in model.graph.output if o.name in made] + [_cut_info(c, infos) for c in cut]
    del graph.output[:]
    graph.output.extend(copy.deepcopy(o) for o in outputs)
    values = [v for v in model.graph.value_info if v.name in made and v.name not in cut]
    del graph.value_info[:]
    graph.value_info.extend(values)
    return network


def attach_post_processing(network: onnx.ModelProto, post: PostProcessing) -> onnx.ModelProto:
    """The pruned network with the tail written back after it: the original's inputs, outputs and tail nodes (with
    their initializers, renamed where the network's copy of one was pruned), the network's opsets kept."""
    original = post.original.graph
    whole = onnx.ModelProto()
    whole.CopyFrom(network)
    graph = whole.graph
    taken = {t.name for t in graph.initializer} | {n for node in graph.node for n in node.output}
    tail_reads = set().union(*(node_reads(n) for n in post.nodes))
    renames = {}
    for tensor in original.initializer:
        if tensor.name not in tail_reads:
            continue
        copied = copy.deepcopy(tensor)
        if tensor.name in taken:
            copied.name = _fresh(tensor.name + "_post", taken)
            renames[tensor.name] = copied.name
        taken.add(copied.name)
        graph.initializer.append(copied)
    graph.node.extend(_renamed(node, renames) for node in post.nodes)
    del graph.input[:]
    graph.input.extend(copy.deepcopy(i) for i in original.input)
    del graph.output[:]
    graph.output.extend(copy.deepcopy(o) for o in original.output)
    tail_made = {o for n in post.nodes for o in n.output}
    graph.value_info.extend(copy.deepcopy(v) for v in original.value_info if v.name in tail_made)
    domains = {o.domain for o in whole.opset_import}
    whole.opset_import.extend(copy.deepcopy(o) for o in post.original.opset_import if o.domain not in domains)
    return whole


def _fresh(name: str, taken: set[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _renamed(node: onnx.NodeProto, renames: dict[str, str]) -> onnx.NodeProto:
    copied = copy.deepcopy(node)
    if renames:
        for k, name in enumerate(copied.input):
            copied.input[k] = renames.get(name, name)
    return copied
