"""`If` nodes whose condition depends only on the input shapes are replaced by the branch they take.

Exporters write `If` where the traced code branched on a tensor's size (silero-vad's TorchScript export:
`if x.shape[-1] == 64`, `if state.shape[1]`). At the input shapes the user prunes for, such a condition
is a constant: onnxruntime computes it in one run, and the branch it selects is spliced into the main
graph (its nodes and initializers, an `Identity` per branch output), repeatedly, so nested `If`s whose
conditions are decided that way go too. The written model then always takes that branch: it is the model
at those input shapes. A condition that reads the *values* of an input (a sample-rate input `sr`) stays
an `If`, and prune refuses it in one line naming the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from darp_onnx.errors import UnsupportedOpError, first_line
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.shapes import fix_input_shapes

SHAPE_ONLY_OPS = {"Shape", "Size"}  # their outputs depend on their input's shape, never on its values
MAX_PASSES = 16


@dataclass
class Inlined:
    model: onnx.ModelProto
    taken: dict[str, str] = field(default_factory=dict)  # If node name -> 'then_branch' / 'else_branch'

    def describe(self) -> str:
        """One line for the report, empty when nothing was inlined."""
        if not self.taken:
            return ""
        return (f"{len(self.taken)} If node(s) decided by the input shapes were replaced by the branch taken "
                f"({', '.join(f'{k}: {v[:4]}' for k, v in list(self.taken.items())[:4])}"
                f"{', ...' if len(self.taken) > 4 else ''}); the written model takes those branches")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in graph.node for name in node.output if name}


def data_inputs_of(condition: str, graph: onnx.GraphProto) -> set[str] | None:
    """Graph inputs whose values the condition reads (empty: it depends only on shapes and constants);
    None when it comes out of a node that cannot be followed (another control-flow node)."""
    producers = _producers(graph)
    inputs = {v.name for v in graph.input} - {t.name for t in graph.initializer}
    seen: set[str] = set()
    stack, reads = [condition], set()
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inputs:
            reads.add(name)
            continue
        node = producers.get(name)
        if node is None or node.op_type in SHAPE_ONLY_OPS:
            continue  # an initializer, or a shape
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return None
        stack.extend(node.input)
    return reads


def _conditions(model: onnx.ModelProto, names: list[str],
                input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, bool]:
    """The value of each condition tensor in one onnxruntime run at the input shapes."""
    probe = fix_input_shapes(model, input_shapes, batch=1)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions, reported in our words; no log lines
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = synthetic_inputs(model, batch=1, seed=0, shapes=input_shapes)
    values = session.run(names, feeds)
    return {name: bool(np.asarray(value).reshape(-1)[0]) for name, value in zip(names, values, strict=True)}


def _splice(graph: onnx.GraphProto, node: onnx.NodeProto, branch: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that replace `node`: the branch's nodes, then an Identity per output."""
    nodes = list(branch.node)
    for inner, outer in zip(branch.output, node.output, strict=True):
        if outer:
            nodes.append(onnx.helper.make_node("Identity", [inner.name], [outer], name=f"{node.name}/{outer}"))
    graph.initializer.extend(branch.initializer)
    graph.value_info.extend(v for v in branch.value_info)
    return nodes


def _one_pass(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]], taken: dict[str, str]) -> bool:
    graph = model.graph
    static = [n for n in graph.node if n.op_type == "If" and n.domain in ("", "ai.onnx")
              and data_inputs_of(n.input[0], graph) == set()]
    if not static:
        return False
    values = _conditions(model, sorted({n.input[0] for n in static}), input_shapes)
    chosen = {id(n): ("then_branch" if values[n.input[0]] else "else_branch") for n in static}
    rebuilt: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) not in chosen:
            rebuilt.append(node)
            continue
        branch = next(a.g for a in node.attribute if a.name == chosen[id(node)])
        taken[node.name or node.output[0]] = chosen[id(node)]
        rebuilt.extend(_splice(graph, node, branch))
    del graph.node[:]
    graph.node.extend(rebuilt)
    return True


def inline_static_ifs(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]],
                      source: str = "the model") -> Inlined:
    """A copy of `model` with every shape-decided `If` replaced by its branch (`model` itself when it has
    none); UnsupportedOpError when onnxruntime cannot run the model to decide."""
    if not any(n.op_type == "If" for n in model.graph.node):
        return Inlined(model)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    taken: dict[str, str] = {}
    try:
        for _ in range(MAX_PASSES):
            if not _one_pass(work, input_shapes, taken):
                break
    except Exception as exc:  # onnxruntime could not run it at these shapes
        raise UnsupportedOpError(f"{source}: control flow (If) could not be decided at the given input shapes: "
                                 f"onnxruntime fails to run the model ({first_line(exc)}); check --input-shape") \
            from None
    return Inlined(work, taken)


def refuse_data_dependent(model: onnx.ModelProto, source: str = "the model") -> None:
    """One line for an `If` left after inlining: its condition reads input values."""
    from darp_onnx.load.front_end import front_end_nodes, has_converter_in

    front = front_end_nodes(model, has_converter_in(model))  # run as written by onnxruntime (load.front_end)
    for node in model.graph.node:
        if node.op_type != "If" or (node.output and node.output[0] in front):
            continue
        reads = data_inputs_of(node.input[0], model.graph)
        why = (f"its condition reads the values of input(s) {', '.join(sorted(reads))}, not only the input shapes"
               if reads else "its condition comes out of other control flow")
        raise UnsupportedOpError(
            f"{source}: node '{node.name or node.output[0]}' (If): {why}, so the branch is chosen at run time and "
            "cannot be pruned; re-export the model for one branch (trace it with the input values you use)")
