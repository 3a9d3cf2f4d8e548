"""`analyse(model)`: the channel groups, axis maps and residual branches of an ONNX model."""

from __future__ import annotations

import onnx

from darp_onnx.errors import BadInputError
from darp_onnx.failures import at_node
from darp_onnx.groups import shape_values
from darp_onnx.groups.blocks import MAX_PASSES, block_sources, merged
from darp_onnx.groups.branches import find_branches
from darp_onnx.groups.model import ChannelAnalysis, ChannelGroup, ResidualBranch
from darp_onnx.groups.partition import Partition
from darp_onnx.groups.rules import COUPLE, rule_for
from darp_onnx.groups.tracer import Tracer
from darp_onnx.groups.units import BRANCH
from darp_onnx.load.naming import has_unique_names, name_nodes  # noqa: F401 (name_nodes: re-exported)

BROADCASTING = frozenset({*COUPLE, "MatMul"})


def _freeze_merged_reads(tracer: Tracer, node: onnx.NodeProto) -> None:
    """Heads merged into the batch axis may only pass a Transpose and the Reshape that splits them out."""
    if node.op_type in ("Reshape", "Transpose") and node.domain in ("", "ai.onnx"):
        return
    for name in node.input:
        if name in tracer.merged:
            tracer.freeze(tracer.merged[name][0].units, f"node '{node.name}' ({node.op_type}) reads heads merged "
                          "into the batch axis")


def _freeze_unknown_shapes(tracer: Tracer, node: onnx.NodeProto) -> None:
    """A node whose output no shape source resolved (darp_onnx.load.ingest) freezes what touches it."""
    unknown = [name for name in node.output if name and tracer.shape(name) is None]
    if not unknown:
        return
    reason = f"shape of '{unknown[0]}' is unknown"
    tracer.freeze_inputs(node, reason)
    for name in node.output:
        lay = tracer.layout(name)
        if lay is not None:
            tracer.freeze(lay.units, f"{reason} (node '{node.name}', {node.op_type})")


def _trace(model: onnx.ModelProto, head_dims: dict[str, int] | None = None,
           blocks: dict[str, int] | None = None) -> Tracer:
    tracer = Tracer(model, head_dims, blocks)
    for node in model.graph.node:
        with at_node(node):
            if node.op_type in BROADCASTING:
                tracer.unify_broadcast(node, batch_only=node.op_type == "MatMul")
            shape_values.visit(tracer, node)
            rule_for(node)(tracer, node)
            _freeze_merged_reads(tracer, node)
        tracer.visited.add(node.name)
        _freeze_unknown_shapes(tracer, node)
    for out in model.graph.output:
        if out.name in tracer.merged:
            tracer.freeze(tracer.merged[out.name][0].units, f"graph output '{out.name}' holds heads merged into "
                          "the batch axis")
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
    if not has_unique_names(model):
        raise BadInputError("the model has unnamed or duplicate node names; pass it through "
                            "darp_onnx.groups.name_nodes or darp_onnx.load.ingest.ingest first (prune and "
                            "inspect do this themselves)")
    tracer = _trace(model)
    heads = {node: d for node, d in tracer.head_splits.items() if d > 1}
    if heads:  # projections split into attention heads: trace again with their channels as heads
        tracer = _trace(model, heads)
    analysis = _analysis_of(model, tracer)
    blocks: dict[str, int] = {}
    for _ in range(MAX_PASSES):  # channels normalised in groups: trace again with their sources in blocks
        wider = merged(blocks, block_sources(model, tracer))
        if wider == blocks:
            break
        blocks, tracer = wider, _trace(model, heads, wider)
        candidate = _analysis_of(model, tracer)
        if _prunable_channels(candidate) >= _prunable_channels(analysis):
            analysis = candidate
    return analysis


def _prunable_channels(analysis: ChannelAnalysis) -> int:
    """Channels of the prunable groups, each counted at the width of its unit, on every tensor (a measure to
    compare two analyses of one model)."""
    prunable = {g.id for g in analysis.prunable() if g.kind != BRANCH.name}
    return sum((seg.stop - seg.start) * amap.repeat * amap.tile for amap in analysis.axis_maps.values()
               for seg in amap.segments if seg.group in prunable)


def _analysis_of(model: onnx.ModelProto, tracer: Tracer) -> ChannelAnalysis:
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
    shapes = {name: tracer.shape(name) for name in tracer.shapes}
    for cand in find_branches(model, shapes, set(tracer.consts)):
        gid = len(groups)
        groups.append(ChannelGroup(id=gid, size=1, kind=BRANCH.name, frozen=None, min_keep=0,
                                   label=f"branch into {cand.add_node} ({len(cand.nodes)} nodes)"))
        branches.append(ResidualBranch(gid, cand.add_node, cand.skip_input, cand.branch_output, cand.nodes))
    return ChannelAnalysis(groups=groups, axis_maps=axis_maps, branches=branches, frozen_reasons=reasons,
                           shape_edits=list(tracer.shape_edits))
