"""The cost model: MACs and parameters as functions of the groups' keep-vectors.

Same counting rules as `count.py` (which reads a graph directly): the test suite checks that a
rewritten model, counted afresh, costs exactly what this model predicts for its masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch

from darp_onnx.cost.count import MAC_OPS, RECURRENT_OPS, int_attr, weight_tensors
from darp_onnx.cost.expr import Affine, Monomial, Term
from darp_onnx.errors import BadInputError
from darp_onnx.failures import at_node
from darp_onnx.load.shapes import static_shapes

if TYPE_CHECKING:
    from darp_onnx.groups.model import ChannelAnalysis


@dataclass(frozen=True)
class NodeCostTerm:
    node: str
    op_type: str
    macs: Monomial


class CostModel:
    """MACs (batch 1) and parameters of a model under channel masks, exact or in expectation."""

    def __init__(
        self,
        model: onnx.ModelProto,
        analysis: ChannelAnalysis,
        input_shapes: Mapping[str, tuple[int, ...]] | None = None,
        observed: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.analysis = analysis
        # static inference first; shapes onnxruntime observed (darp_onnx.load.ingest) fill what it leaves
        self.shapes = {**dict(observed or {}), **static_shapes(model, input_shapes)}
        node_branches: dict[str, tuple[int, ...]] = {}
        for branch in analysis.branches:
            for name in branch.nodes:
                node_branches[name] = (*node_branches.get(name, ()), branch.group)
        self.node_branches = node_branches  # node name -> the branch groups it lives in
        self.presence = node_presence(model, node_branches)
        self.node_terms = []
        for node in model.graph.node:
            with at_node(node):
                term = self._node_term(node, self.presence)
            if term is not None:
                self.node_terms.append(term)
        self.param_terms = self._param_terms(model, self.presence)
        everything = analysis.all_kept()
        self.full_macs = self.macs(everything)
        self.full_params = self.params(everything)

    # counts ---------------------------------------------------------------------------------------
    def count(self, tensor: str, axis: int) -> Affine:
        shape = self.shapes.get(tensor)
        if shape is None:
            raise ValueError(f"tensor '{tensor}': shape unknown; give the input shapes")
        axis = axis % len(shape)
        amap = self.analysis.axis_maps.get((tensor, axis))
        if amap is None:
            return Affine(int(shape[axis]))
        covered = sum(s.stop - s.start for s in amap.segments)
        terms = tuple(Term(s.group, s.start, s.stop, amap.width) for s in amap.segments)
        return Affine(int(amap.size) - covered * amap.width, terms)

    def _all_axes(self, tensor: str) -> tuple[Affine, ...]:
        return tuple(self.count(tensor, i) for i in range(len(self.shapes[tensor])))

    def _node_term(self, node: onnx.NodeProto, presence) -> NodeCostTerm | None:
        op = node.op_type
        if op in MAC_OPS:
            unknown = [t for t in (*node.input[:2], node.output[0]) if t not in self.shapes]
            if unknown:
                raise BadInputError(
                    f"node '{node.name}' ({op}): the shape of '{unknown[0]}' is unknown (no shape inference "
                    "resolves it and onnxruntime could not run the model); give --input-shape for every input"
                )
        presence = presence.get(node.name, ())
        if op == "Conv":
            w = self.shapes[node.input[1]]
            factors = (*self._all_axes(node.output[0]), self.count(node.input[1], 1))
            coef = prod(w[2:])
        elif op == "ConvTranspose":
            w = self.shapes[node.input[1]]
            factors = (*self._all_axes(node.input[0]), self.count(node.input[1], 1))
            coef = prod(w[2:])
        elif op == "Gemm":
            k_axis = 0 if int_attr(node, "transA", 0) else 1
            factors = (*self._all_axes(node.output[0]), self.count(node.input[0], k_axis))
            coef = 1
        elif op == "MatMul":
            factors = (*self._all_axes(node.output[0]), self.count(node.input[0], -1))
            coef = 1
        elif op in RECURRENT_OPS:
            x, r = self.shapes[node.input[0]], self.shapes[node.input[2]]
            inputs = self.count(node.input[1], 2)
            per_step = Affine(inputs.const + r[2], inputs.terms)  # W's input columns and R's state columns
            factors = (self.count(node.input[1], 0), self.count(node.input[1], 1), per_step)
            coef = x[0] * x[1]
        else:
            return None
        return NodeCostTerm(node.name, op, Monomial(coef, factors, presence))

    def _param_terms(self, model: onnx.ModelProto, presence) -> dict[str, Monomial]:
        consumers: dict[str, list[str]] = {}
        for node in model.graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.name)
        graph_outputs = {o.name for o in model.graph.output}
        terms: dict[str, Monomial] = {}
        for name, dims in weight_tensors(model).items():
            factors = tuple(self.count(name, i) for i in range(len(dims)))
            users = consumers.get(name, [])
            always = name in graph_outputs or not users
            terms[name] = Monomial(1, factors, () if always else _union([presence.get(u, ()) for u in users]))
        return terms

    # evaluation -----------------------------------------------------------------------------------
    def macs(self, masks: Mapping[int, np.ndarray]) -> int:
        return int(sum(t.macs.value(masks) for t in self.node_terms))

    def params(self, masks: Mapping[int, np.ndarray]) -> int:
        return int(sum(m.value(masks) for m in self.param_terms.values()))

    def node_macs(self, masks: Mapping[int, np.ndarray]) -> dict[str, int]:
        return {t.node: t.macs.value(masks) for t in self.node_terms}

    def expected_macs(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        return _as_tensor(sum((t.macs.expected(probs) for t in self.node_terms), 0.0))

    def expected_params(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        return _as_tensor(sum((m.expected(probs) for m in self.param_terms.values()), 0.0))

    def smallest_masks(self) -> dict[int, np.ndarray]:
        """Every prunable group at its minimum (one unit, or none for a droppable branch)."""
        masks = self.analysis.all_kept()
        for group in self.analysis.prunable():
            keep = np.zeros(group.size, dtype=bool)
            keep[: group.min_keep] = True
            masks[group.id] = keep
        return masks


def _as_tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value))


MAX_ALTERNATIVES = 64  # beyond this many ways of being computed, a node is counted as always computed


def _union(alternatives: list[tuple[tuple[int, ...], ...]]) -> tuple[tuple[int, ...], ...]:
    """Present when any of them is; () (always) when one of them is always, or when there are too many."""
    if any(alt == () for alt in alternatives):
        return ()
    merged = tuple(dict.fromkeys(a for alt in alternatives for a in alt))
    return () if len(merged) > MAX_ALTERNATIVES else merged


def node_presence(model: onnx.ModelProto, node_branches: Mapping[str, tuple[int, ...]]
                  ) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per node, the alternatives (branch groups that must all be kept) under which the rewritten model still
    computes it; () for always. A node outside every branch that only dropped branches read is removed with them:
    dynamo's attention scale, computed once from two scalar initializers for all of a wav2vec2's attention
    branches, went with the last of them, and the recount found 2 parameters fewer than this model predicted."""
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    outputs = {o.name for o in model.graph.output}
    presence: dict[str, tuple[tuple[int, ...], ...]] = {}
    for node in reversed(model.graph.node):
        users = [u for o in node.output for u in readers.get(o, [])]
        feeds_output = any(o in outputs for o in node.output) or not users
        down = () if feeds_output else _union([presence.get(u, ()) for u in users])
        own = node_branches.get(node.name)
        if own is None:
            presence[node.name] = down
        else:
            alts = down or ((),)
            presence[node.name] = tuple(dict.fromkeys(tuple(sorted({*own, *alt})) for alt in alts))
    return presence
