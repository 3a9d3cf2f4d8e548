"""Residual branches y = x + F(x) whose F can be dropped whole (y becomes x)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import onnx


@dataclass(frozen=True)
class BranchCandidate:
    add_node: str
    skip_input: str
    branch_output: str
    nodes: tuple[str, ...]


def _same_shape(shapes: dict, names: list[str]) -> bool:
    known = [shapes.get(n) for n in names]
    return all(s is not None and None not in s for s in known) and all(s == known[0] for s in known)


def find_branches(model: onnx.ModelProto, shapes: dict, consts: set[str]) -> list[BranchCandidate]:
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    consumers: dict[str, set[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, set()).add(i)
    outputs = {o.name for o in graph.output}
    found = []
    for a, add in enumerate(nodes):
        if add.op_type != "Add" or len(add.input) != 2 or any(n in consts for n in add.input):
            continue
        if not _same_shape(shapes, [add.input[0], add.input[1], add.output[0]]):
            continue
        for skip, branch in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
            members = _exclusive(nodes, producer, consumers, outputs, branch, a)
            if members and _computes(nodes, members) and _reaches(nodes, producer, members, skip):
                names = tuple(nodes[i].name for i in sorted(members))
                found.append(BranchCandidate(add.name, skip, branch, names))
                break
    return found


COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"})


def _computes(nodes, members: set[int]) -> bool:
    """A block worth dropping has a weighted layer: x + 0.044715 * x^3 inside a tanh GELU does not."""
    return any(nodes[i].op_type in COMPUTE_OPS for i in members)


def _exclusive(nodes, producer, consumers, outputs, branch: str, add: int) -> set[int]:
    """Nodes whose outputs feed only `branch` (transitively) and reach no graph output.

    Walks back from the branch output over the producers of members' inputs only, highest node index
    first (a max-heap): in a topologically sorted graph every consumer of a node is decided before
    the node itself, so this equals a full backward scan while staying linear in the branch size."""
    start = producer.get(branch)
    if start is None:
        return set()
    node = nodes[start]
    uses = set().union(*(consumers.get(o, set()) for o in node.output if o))
    if uses != {add} or any(o in outputs for o in node.output):
        return set()
    members = {start}
    heap: list[int] = []
    queued = {start}

    def push_inputs(i: int) -> None:
        for name in nodes[i].input:
            j = producer.get(name)
            if j is not None and j not in queued:
                queued.add(j)
                heapq.heappush(heap, -j)

    push_inputs(start)
    while heap:
        i = -heapq.heappop(heap)
        node = nodes[i]
        uses = set().union(*(consumers.get(o, set()) for o in node.output if o))
        if uses and uses <= members and not any(o in outputs for o in node.output):
            members.add(i)
            push_inputs(i)
    return members


def _reaches(nodes, producer, members: set[int], skip: str) -> bool:
    """True when tensor `skip` is an ancestor of the branch (the branch starts from x)."""
    seen: set[int] = set()
    stack = list(members)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for name in nodes[i].input:
            if name == skip:
                return True
            j = producer.get(name)
            if j is not None:
                stack.append(j)
    return False

