"""Integer values computed from constants alone, folded into initializers before the analysis.

torch's TorchScript exporter writes `F.pad`'s pads as Constant -> ConstantOfShape -> Concat -> Reshape ->
Slice -> Transpose -> Reshape -> Cast: every value is known before run time, yet the channel analysis,
which reads constants, found the pads "computed at run time" and froze every convolution of torchcrepe's
pitch tracker (0 prunable groups; the same file folded by onnxruntime had 6). Here every integer or boolean
tensor that nodes compute from constants alone (and that a node outside that computation reads) is
evaluated once with onnx's reference evaluator and stored as an initializer; the nodes that only fed it go.
Nothing that depends on an input is touched (a `Shape` of an activation stays, and with it a free batch),
and float values are left to `stored_weights` (which keeps float16 weights float16 when written).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from darp_onnx.load.order import node_reads

MAX_FOLDED = 4096  # elements: shape vectors, pads, indices; larger integer tensors are left as computed
INTEGER_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                 onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
                 onnx.TensorProto.BOOL}
RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def fold_constant_islands(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with its constant integer values folded, and how many tensors were; `model` itself
    where there is none."""
    island = _constant_nodes(model.graph)
    nodes = [model.graph.node[k] for k in sorted(island)]
    wanted = _integer_boundary(model, nodes)
    values = _evaluate(model, nodes, wanted) if wanted else {}
    if not values:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in values.items())
    left = [(k, n) for k, n in enumerate(out.graph.node) if not set(n.output) & set(values)]
    kept = [n for _, n in _without_dead(left, island, {o.name for o in out.graph.output})]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out, len(values)


def _constant_nodes(graph: onnx.GraphProto) -> set[int]:
    """The positions of the nodes whose inputs are all constants: initializers, Constant outputs, their results."""
    declared = {v.name for v in graph.input}  # an initializer listed as an input may be fed: not a constant
    constant = {t.name for t in graph.initializer if t.name not in declared}
    found = set()
    for k, node in enumerate(graph.node):
        inputs = [i for i in node.input if i]
        if node.domain not in ("", "ai.onnx") or node.op_type in RANDOM_OPS or node_reads(node) != set(inputs):
            continue  # custom ops, random draws and nodes with sub-graphs are left as they are
        if node.op_type == "Constant" or (inputs and all(i in constant for i in inputs)):
            found.add(k)
            constant.update(o for o in node.output if o)
    return found


def _integer_boundary(model: onnx.ModelProto, island: list[onnx.NodeProto]) -> list[str]:
    """The integer tensors the island computes (not Constant nodes' own values) that a node outside it, or
    nothing at all (a graph output: left as it is), reads; their types from onnx's shape inference."""
    inside = {id(n) for n in island}
    computed = {o for n in island if n.op_type != "Constant" for o in n.output if o}
    read_outside = {name for n in model.graph.node if id(n) not in inside for name in node_reads(n)}
    outputs = {o.name for o in model.graph.output}
    candidates = computed & read_outside - outputs
    if not candidates:
        return []
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - types unknown: nothing folded
        return []
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    return sorted(name for name in candidates if types.get(name) in INTEGER_TYPES)


def _evaluate(model: onnx.ModelProto, island: list[onnx.NodeProto], wanted: list[str]) -> dict[str, np.ndarray]:
    """The values of `wanted` (those small enough), computed from the island's nodes that lead to them."""
    producers = {o: n for n in island for o in n.output}
    needed, stack = set(), list(wanted)
    while stack:
        node = producers.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [n for n in island if id(n) in needed]
    reads = {i for n in nodes for i in n.input if i}
    graph = helper.make_graph(nodes, "constants", [], [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED,
                                                                                     None) for name in wanted],
                              [t for t in model.graph.initializer if t.name in reads])
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        from onnx.reference import ReferenceEvaluator

        results = ReferenceEvaluator(sub).run(None, {})
    except Exception:  # noqa: BLE001 - an op the evaluator lacks: left as computed
        return {}
    return {name: np.asarray(value) for name, value in zip(wanted, results, strict=True)
            if np.asarray(value).size <= MAX_FOLDED}


def _without_dead(nodes: list[tuple[int, onnx.NodeProto]], island: set[int], outputs: set[str]
                 ) -> list[tuple[int, onnx.NodeProto]]:
    """`nodes` (position, node) less the island's nodes nothing reads any more (repeated: a chain goes whole)."""
    while True:
        read = {name for _, n in nodes for name in node_reads(n)} | outputs
        dead = {k for k, n in nodes if k in island and not any(o in read for o in n.output if o)}
        if not dead:
            return nodes
        nodes = [(k, n) for k, n in nodes if k not in dead]
