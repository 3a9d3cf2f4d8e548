"""Measured onnxruntime latency as a function of the groups' keep-vectors (a per-node lookup table).

MACs are a poor guide to latency: a 16-channel 3x3 convolution at full resolution runs at well under
the MAC rate of a 64-channel one, element-wise nodes cost time and no MACs, and onnxruntime's blocked
kernels want channel counts in multiples of their block. So each compute node (Conv, Gemm, MatMul
with a weight) is timed alone, on the target runtime, on a small grid of input x output channel
counts, and read between grid points by bilinear interpolation; every other node costs a measured
time per output element, except a MatMul of two activations that keeps attention heads on a batch
axis (Q K^T, attention x V), which is timed alone at the grid's head counts. The estimate ignores what
onnxruntime adds or fuses (layout reorders, Conv+activation fusion), so it ranks choices well but is
not the model's exact latency: the written model's latency is measured separately, by validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import ceil

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from darp_onnx.cost.count import int_attr
from darp_onnx.cost.expr import Affine, Monomial
from darp_onnx.load.attributes import node_attributes
from darp_onnx.runtime.session import make_session
from darp_onnx.runtime.timer import adaptive_median_ms, time_sessions

GRID_FRACTIONS = (0.25, 0.5, 0.75)
_ELEMENTWISE_PROBE = (1, 64, 56, 56)  # calibration tensor for the per-element cost
Timer = Callable[[onnx.ModelProto, dict[str, np.ndarray]], float]  # model, feeds -> milliseconds


@dataclass(frozen=True)
class NodeTable:
    """Latency of one compute node on a grid of (kept input channels, kept output channels)."""

    node: str
    cin: Affine
    cout: Affine
    cin_grid: tuple[int, ...]
    cout_grid: tuple[int, ...]
    ms: np.ndarray  # [len(cin_grid), len(cout_grid)]
    presence: tuple[tuple[int, ...], ...]

    def value(self, masks: Mapping[int, np.ndarray]) -> float:
        if not Monomial(1, (), self.presence).value(masks):
            return 0.0
        return interpolate(self.cin_grid, self.cout_grid, self.ms, self.cin.value(masks), self.cout.value(masks))

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """The table read at the expected channel counts, times the probability that the node exists:
        piecewise linear in the keep probabilities, so the search can follow its gradient."""
        present = _tensor(Monomial(1, (), self.presence).expected(probs))
        cin, cout = _tensor(self.cin.expected(probs)), _tensor(self.cout.expected(probs))
        table = torch.as_tensor(self.ms, dtype=cin.dtype, device=cin.device)
        rows = torch.stack([_interp1_torch(self.cout_grid, table[i], cout) for i in range(len(self.cin_grid))])
        return present * _interp1_torch(self.cin_grid, rows, cin)


@dataclass(frozen=True)
class ElementTerm:
    """A non-compute node: `ms_per_element * elements of its outputs`."""

    node: str
    elements: tuple[Monomial, ...]
    ms_per_element: float

    def value(self, masks: Mapping[int, np.ndarray]) -> float:
        return self.ms_per_element * sum(m.value(masks) for m in self.elements)

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        return self.ms_per_element * sum((_tensor(m.expected(probs)) for m in self.elements), _tensor(0.0))


def interpolate(xs: tuple[int, ...], ys: tuple[int, ...], table: np.ndarray, x: float, y: float) -> float:
    """Bilinear interpolation on a rectilinear grid; linear towards zero below the smallest point."""
    rows = np.array([_interp1(ys, table[i], y) for i in range(len(xs))])
    return _interp1(xs, rows, x)


def _interp1(points: tuple[int, ...], values: np.ndarray, x: float) -> float:
    if x < points[0]:
        return float(values[0]) * x / points[0]
    return float(np.interp(x, points, values))


def _interp1_torch(points: tuple[int, ...], values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`_interp1` on a 0-d tensor `x`, differentiable in `x` and `values`."""
    position = float(x.detach())
    if len(points) == 1 or position <= points[0]:
        return values[0] * torch.clamp(x / points[0], max=1.0)
    i = min(int(np.searchsorted(points, position, side="right")) - 1, len(points) - 2)
    lo, hi = points[i], points[i + 1]
    t = torch.clamp((x - lo) / (hi - lo), max=1.0)
    return values[i] + (values[i + 1] - values[i]) * t


def _tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)


def grid(full: int, smallest: int, multiple: int) -> tuple[int, ...]:
    """Channel counts to time between `smallest` and `full`: both ends and the quarter points,
    rounded up to `multiple` (with a multiple, nothing below it is ever chosen, so it is the floor)."""
    smallest = max(smallest, min(full, multiple))
    if full <= smallest:
        return (full,)
    points = {smallest, full}
    for f in GRID_FRACTIONS:
        points.add(min(full, max(smallest, -(-ceil(full * f) // multiple) * multiple)))
    return tuple(sorted(points))


class LatencyModel:
    """Estimated latency (ms) of the model under channel masks, from timings on `device`."""

    def __init__(self, model: onnx.ModelProto, cost_model, *, device: str = "cpu", threads: int = 0,
                 channel_multiple: int = 1, timer: Timer | None = None) -> None:
        self.device = device
        self._timer = timer or _SessionTimer(device, threads)
        self._cache: dict[tuple, float] = {}
        self._cost = cost_model
        self._multiple = max(1, channel_multiple)
        self._smallest = cost_model.smallest_masks()
        initializers = {t.name: t for t in model.graph.initializer}
        self.ms_per_element = self._measure_elementwise()
        self.tables: list[NodeTable] = []
        self.untimed: list[str] = []  # compute nodes onnxruntime could not run alone: priced per element
        self.elements: list[ElementTerm] = []
        for node in model.graph.node:
            table = self._compute_table(node, initializers) or self._attention_table(node, initializers)
            if table is not None:
                self.tables.append(table)
            elif node.op_type not in ("Constant", "Shape", "Identity", "Reshape", "Flatten", "Squeeze",
                                      "Unsqueeze"):
                self.elements.append(self._element_term(node))
        everything = cost_model.analysis.all_kept()
        self.full_ms = self.estimate(everything)
        self.measurements = len(self._cache)

    def estimate(self, masks: Mapping[int, np.ndarray]) -> float:
        return sum(t.value(masks) for t in self.tables) + sum(e.value(masks) for e in self.elements)

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Estimated latency at the expected channel counts (the search's differentiable cost)."""
        return sum((t.expected(probs) for t in (*self.tables, *self.elements)), _tensor(0.0))

    # measurement ------------------------------------------------------------------------------------
    def _presence(self, node: onnx.NodeProto) -> tuple[tuple[int, ...], ...]:
        branches = self._cost.node_branches
        return (branches[node.name],) if node.name in branches else ()

    def _element_term(self, node: onnx.NodeProto) -> ElementTerm:
        shapes = self._cost.shapes
        monomials = tuple(Monomial(1, tuple(self._cost.count(o, i) for i in range(len(shapes[o]))),
                                   self._presence(node))
                          for o in node.output if o in shapes and len(shapes[o]) > 0)
        return ElementTerm(node.name, monomials, self.ms_per_element)

    def _compute_table(self, node: onnx.NodeProto, initializers) -> NodeTable | None:
        shapes = self._cost.shapes
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            return None
        if node.input[1] not in initializers or node.input[0] not in shapes or node.output[0] not in shapes:
            return None
        x_shape, y_shape = shapes[node.input[0]], shapes[node.output[0]]
        if node.op_type == "Conv":
            cin_axis, cout_axis = 1, 1
        elif node.op_type == "Gemm":
            cin_axis = 0 if int_attr(node, "transA", 0) else 1
            cout_axis = 1
        else:
            if len(initializers[node.input[1]].dims) != 2:
                return None
            cin_axis, cout_axis = len(x_shape) - 1, len(y_shape) - 1
        cin, cout = self._cost.count(node.input[0], cin_axis), self._cost.count(node.output[0], cout_axis)
        depthwise = node.op_type == "Conv" and int_attr(node, "group", 1) == x_shape[1] == y_shape[1] > 1
        cin_grid = grid(cin.value(self._cost.analysis.all_kept()), cin.value(self._smallest), self._multiple)
        cout_grid = cin_grid if depthwise else grid(cout.value(self._cost.analysis.all_kept()),
                                                    cout.value(self._smallest), self._multiple)
        table = np.zeros((len(cin_grid), len(cout_grid)))
        for i, ci in enumerate(cin_grid):
            for j, co in enumerate(cout_grid):
                if depthwise and ci != co:
                    continue
                try:
                    table[i, j] = self._time_node(node, initializers, x_shape, cin_axis, ci, co)
                except Exception:  # e.g. attributes onnxruntime rejects on a lone node
                    self.untimed.append(node.name)
                    return None
        if depthwise:  # only the diagonal exists; spread it so interpolation reads the diagonal
            diagonal = np.diag(table).copy()
            table = np.tile(diagonal[:, None], (1, len(cout_grid)))
        return NodeTable(node.name, cin, cout, cin_grid, cout_grid, table, self._presence(node))

    def _attention_table(self, node: onnx.NodeProto, initializers) -> NodeTable | None:
        """MatMul of two activations with heads on a batch axis (Q K^T, attention x V): timed alone at the
        grid's head counts (both operands cut to that many heads); `cin` is the head count."""
        shapes = self._cost.shapes
        if node.op_type != "MatMul" or any(n in initializers or n not in shapes for n in (*node.input, node.output[0])):
            return None
        out = shapes[node.output[0]]
        axis = next((a for (name, a), m in self._cost.analysis.axis_maps.items()
                     if name == node.output[0] and m.segments and a < len(out) - 2), None)
        if axis is None:
            return None
        heads = self._cost.count(node.output[0], axis)
        head_grid = grid(heads.value(self._cost.analysis.all_kept()), max(1, heads.value(self._smallest)), 1)
        table = np.zeros((len(head_grid), 1))
        for i, h in enumerate(head_grid):
            operands = [_with_dim(shapes[n], axis - (len(out) - len(shapes[n])), h) for n in node.input]
            key = ("MatMul", *map(tuple, operands))
            try:
                if key not in self._cache:
                    self._cache[key] = self._timer(*_matmul_model(*operands))
            except Exception:  # onnxruntime refuses the lone node
                self.untimed.append(node.name)
                return None
            table[i, 0] = self._cache[key]
        return NodeTable(node.name, heads, Affine(1), head_grid, (1,), table, self._presence(node))

    def _time_node(self, node, initializers, x_shape, cin_axis: int, cin: int, cout: int) -> float:
        x = list(x_shape)
        x[cin_axis] = cin
        weight = initializers[node.input[1]]
        w_shape = list(weight.dims)
        attrs = node_attributes(node)
        if node.op_type == "Conv":
            group = int(attrs.get("group", 1))
            if group > 1 and group == x_shape[1]:
                attrs["group"] = cin
                w_shape[:2] = [cout, 1]
            else:
                w_shape[:2] = [cout, cin // group]
        elif node.op_type == "Gemm":
            w_shape = [cout, cin] if attrs.get("transB", 0) else [cin, cout]
        else:
            w_shape = [cin, cout]
        has_bias = len(node.input) > 2 and bool(node.input[2])
        key = (node.op_type, tuple(x), tuple(w_shape), has_bias, repr(sorted(attrs.items())))
        if key not in self._cache:
            self._cache[key] = self._timer(*_single_node_model(node.op_type, x, w_shape, cout, has_bias, attrs))
        return self._cache[key]

    def _measure_elementwise(self) -> float:
        shape = list(_ELEMENTWISE_PROBE)
        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)
        y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)
        graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "probe", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        feeds = {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        return self._timer(model, feeds) / float(np.prod(shape))


def _single_node_model(op: str, x_shape, w_shape, cout: int, has_bias: bool, attrs
                       ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32) * 0.1, "w")]
    inputs = ["x", "w"]
    if has_bias:
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(op, inputs, ["y"], **attrs)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "node", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


def _with_dim(shape, axis: int, size: int) -> list[int]:
    """`shape` with `size` at `axis` (an axis it broadcasts over, size 1 or absent, stays)."""
    shape = list(shape)
    if axis >= 0 and shape[axis] != 1:
        shape[axis] = size
    return shape


def _matmul_model(a_shape, b_shape) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    a = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, list(a_shape))
    b = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, list(b_shape))
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "attention", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model, {"a": rng.standard_normal(a_shape).astype(np.float32),
                   "b": rng.standard_normal(b_shape).astype(np.float32)}


class _SessionTimer:
    """Median wall time of onnxruntime runs; repeats until ~50 ms of runs (3 to 15 runs)."""

    def __init__(self, device: str, threads: int) -> None:
        self.device, self.threads = device, threads

    def __call__(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
        return adaptive_median_ms(make_session(model, self.device, threads=self.threads), feeds)


def compare_latencies(models: list[onnx.ModelProto], feeds: Mapping[str, np.ndarray], *, device: str = "cpu",
                      threads: int = 0, runs: int = 15, rounds: int = 3) -> list[float]:
    """Median ms of each model on the same inputs (see `time_sessions`)."""
    sessions = [make_session(m, device, threads=threads) for m in models]
    return time_sessions(sessions, feeds, runs=runs, rounds=rounds)


def term_groups(term: NodeTable | ElementTerm | Monomial) -> set[int]:
    """The groups (channel counts and branch presence) a latency term or a cost monomial depends on."""
    if isinstance(term, NodeTable):
        affines, presence = (term.cin, term.cout), term.presence
    elif isinstance(term, ElementTerm):
        affines = tuple(f for m in term.elements for f in m.factors)
        presence = tuple(alt for m in term.elements for alt in m.presence)
    else:
        affines, presence = term.factors, term.presence
    groups = {t.group for a in affines for t in a.terms}
    return groups | {b for alt in presence for b in alt}

