"""`analyse(model)`: the channel groups, axis maps and residual branches of an ONNX model."""

from __future__ import annotations

from collections import Counter

import onnx

from darp_onnx.errors import BadInputError
from darp_onnx.groups import shape_values
from darp_onnx.groups.branches import find_branches
from darp_onnx.groups.model import ChannelAnalysis, ChannelGroup, ResidualBranch
from darp_onnx.groups.partition import Partition
from darp_onnx.groups.rules import rule_for
from darp_onnx.groups.tracer import Tracer
from darp_onnx.groups.units import BRANCH


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose nodes all have unique names (the analysis refers to nodes by name)."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    taken = Counter(n.name for n in named.graph.node)
    used: set[str] = set()
    for i, node in enumerate(named.graph.node):
        if not node.name or taken[node.name] > 1 or node.name in used:
            base = f"{node.op_type}_{i}"
            name, k = base, 1
            while name in taken or name in used:
                k += 1
                name = f"{base}_{k}"
            node.name = name
        used.add(node.name)
    return named


def _trace(model: onnx.ModelProto) -> Tracer:
    tracer = Tracer(model)
    for node in model.graph.node:
        shape_values.visit(tracer, node)
        rule_for(node)(tracer, node)
        tracer.visited.add(node.name)
    for out in model.graph.output:
        shape_values.freeze_refs(tracer, tracer.shape_values.get(out.name), f"graph output '{out.name}' is a "
                                 "shape that reads a channel count")
        lay = tracer.layout(out.name)
        if lay is not None:
            tracer.freeze(lay.units, f"reaches graph output '{out.name}'")
    outputs = {o.name for o in model.graph.output}
    for (name, _), lay in list(tracer.const_layouts.items()):
        users = {n.name for n in tracer.consumers.get(name, [])}
        strangers = users - tracer.const_claims[name]
        if strangers or name in outputs:
            tracer.freeze(lay.units, f"constant '{name}' is also read by {sorted(strangers) or 'the output'}")
    return tracer


def analyse(model: onnx.ModelProto) -> ChannelAnalysis:
    """Channel analysis of a shape-inferred model (see darp_onnx.load.io.load_model)."""
    names = [n.name for n in model.graph.node]
    if "" in names or len(set(names)) != len(names):
        raise BadInputError(
            "the model has unnamed or duplicate node names; pass it through darp_onnx.groups.name_nodes first"
        )
    tracer = _trace(model)
    part = Partition(tracer, [*tracer.layouts.values(), *tracer.const_layouts.values()])
    groups = part.groups
    reasons: list[str] = []
    for units, reason in tracer.freezes:
        for gid in part.groups_of(units):
            group = groups[int(gid)]
            if group.frozen is None:
                group.frozen = reason
                reasons.append(f"{group.label}: {reason}")
    axis_maps = {}
    for name, lay in tracer.layouts.items():
        amap = part.axis_map(name, lay)
        if amap is not None:
            axis_maps[(name, lay.axis)] = amap
    for (name, axis), lay in tracer.const_layouts.items():
        amap = part.axis_map(name, lay)
        if amap is not None:
            axis_maps[(name, axis)] = amap
    branches = []
    for cand in find_branches(model, tracer.shapes, set(tracer.consts)):
        gid = len(groups)
        groups.append(ChannelGroup(id=gid, size=1, kind=BRANCH.name, frozen=None, min_keep=0,
                                   label=f"branch into {cand.add_node} ({len(cand.nodes)} nodes)"))
        branches.append(ResidualBranch(gid, cand.add_node, cand.skip_input, cand.branch_output, cand.nodes))
    return ChannelAnalysis(groups=groups, axis_maps=axis_maps, branches=branches, frozen_reasons=reasons,
                           shape_edits=list(tracer.shape_edits))
