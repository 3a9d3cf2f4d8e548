"""Checks shared by the analysis and rewriter tests: random masks, an ONNX-level gated oracle, the proxy
gate check and the end-to-end equivalence assertion."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from darp_onnx.groups import ChannelAnalysis
from darp_onnx.groups.rules import SINK_OPS, mixes_channels
from darp_onnx.proxy import build_proxy, supported_ops
from darp_onnx.rewrite import rewrite
from darp_onnx.search.gates import attach_gates

RTOL, ATOL = 1e-4, 1e-5
SYMBOLIC_SIZES = {"N": 2, "H": 8, "W": 6, "T": 5}  # sizes fed for the symbolic dims of the test models


def random_masks(analysis: ChannelAnalysis, rng: np.random.Generator, drop_branches: bool = True) -> dict:
    masks = {}
    for group in analysis.prunable():
        if group.kind == "branch":
            masks[group.id] = np.array([not (drop_branches and rng.random() < 0.5)])
            continue
        keep = rng.random(group.size) < rng.uniform(0.2, 0.9)
        keep[rng.integers(group.size)] = True
        masks[group.id] = keep
    return masks


def gated_onnx(model: onnx.ModelProto, analysis: ChannelAnalysis, masks: dict) -> onnx.ModelProto:
    """The original model with Mul-by-mask nodes before every sink input and dropped branch outputs: what
    the gated proxy computes, expressed in ONNX (works without proxy converters)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts = {i.name for i in out.graph.initializer}
    maps = {key[0]: amap for key, amap in analysis.axis_maps.items() if key[0] not in consts}
    branch_at = {b.add_node: b for b in analysis.branches}
    nodes = []
    for node in out.graph.node:
        targets = []
        if node.op_type in SINK_OPS:
            targets = [(i, maps[n]) for i, n in enumerate(node.input)
                       if n in maps and mixes_channels(node.op_type, i, maps[n].axis, len(_shape(model, n)))]
        branch = branch_at.get(node.name)
        if branch is not None and branch.group in masks:
            gate = float(masks[branch.group][0])
            targets += [(i, gate) for i, n in enumerate(node.input) if n == branch.branch_output]
        for i, target in targets:
            if isinstance(target, float):
                vec = np.array(target, dtype=np.float32)
            else:
                keep = np.zeros(target.size, dtype=np.float32)
                keep[target.kept_indices(masks)] = 1
                rank = len(_shape(model, node.input[i]))
                vec = keep.reshape([-1] + [1] * (rank - target.axis - 1))
            gate_name = f"{node.name}_gate{i}"
            out.graph.initializer.append(numpy_helper.from_array(vec, gate_name))
            mul = helper.make_node("Mul", [node.input[i], gate_name], [gate_name + "_y"],
                                   name=gate_name + "_mul")
            nodes.append(mul)
            node.input[i] = gate_name + "_y"
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _shape(model: onnx.ModelProto, name: str) -> list:
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if vi.name == name:
            return list(vi.type.tensor_type.shape.dim)
    raise KeyError(name)


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def feeds_for(model: onnx.ModelProto, seed: int = 0, sizes: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    sizes = SYMBOLIC_SIZES if sizes is None else sizes
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name not in inits:
            shape = [d.dim_value if d.HasField("dim_value") else sizes.get(d.dim_param, 1)
                     for d in vi.type.tensor_type.shape.dim]
            feeds[vi.name] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return feeds


def proxy_supports(model: onnx.ModelProto) -> bool:
    import darp_onnx.proxy.ops  # noqa: F401

    ops = set(supported_ops())
    return all(n.op_type in ops or n.op_type == "Constant" for n in model.graph.node)


def run_gated_proxy(model: onnx.ModelProto, analysis: ChannelAnalysis, masks: dict, feeds: dict) -> list:
    proxy = build_proxy(model)
    handle = attach_gates(proxy, analysis)
    handle.set_masks(masks)
    with torch.no_grad():
        out = proxy.run({k: torch.from_numpy(v) for k, v in feeds.items()})
    return [out[n].numpy() for n in proxy.output_names]


def assert_equivalent(
    model: onnx.ModelProto, analysis: ChannelAnalysis, masks: dict, seed: int = 0
) -> onnx.ModelProto:
    """rewrite(model) on onnxruntime == the gated model (ONNX oracle, and the gated proxy when the proxy
    converts every op)."""
    pruned = rewrite(model, analysis, masks)
    feeds = feeds_for(model, seed)
    actual = run_ort(pruned, feeds)
    expected = run_ort(gated_onnx(model, analysis, masks), feeds)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    if proxy_supports(model):
        for a, e in zip(actual, run_gated_proxy(model, analysis, masks, feeds), strict=True):
            np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    return pruned
