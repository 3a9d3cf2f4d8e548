"""The trainable PyTorch proxy of an ONNX graph."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from darp_onnx.errors import BadInputError, DarpError, UnsupportedOpError
from darp_onnx.failures import at_node, mark_node
from darp_onnx.load.constants import TensorSource, collect_constants
from darp_onnx.load.front_end import front_end_nodes, has_converter_in
from darp_onnx.load.io import default_opset
from darp_onnx.proxy.context import ConvertContext, is_supported_elem_type, numpy_to_torch, onnx_to_torch_dtype
from darp_onnx.proxy.export import proxy_to_onnx
from darp_onnx.proxy.fusion import find_fusions
from darp_onnx.proxy.ops.runtime_node import runtime_node_result
from darp_onnx.proxy.registry import (
    MAX_TESTED_OPSET,
    claimed_versions,
    get_converter,
    normalise_domain,
    resolve_since_version,
    supported_ops,
)

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
               onnx.TensorProto.DOUBLE)

# A hook that may replace the inputs of one step (the gate mechanism of the search plugs in here).
InputTransform = Callable[[list], list]


@dataclass(frozen=True)
class _FusedNode:
    """Stands in for a node in the plan when several nodes run as one fused step."""

    name: str
    op_type: str


@dataclass(frozen=True)
class Step:
    """One executed node: its module index and the ONNX names it reads and writes."""

    node_name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    free_after: tuple[str, ...]  # intermediate tensors no later step reads


# Names a parameter key must not take: attributes of the container (`values`, `keys`, `to`, ...).
_RESERVED_KEYS = frozenset(dir(nn.ParameterDict))


def _safe_key(name: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", name) or "t"
    if key[0].isdigit() or key in _RESERVED_KEYS:
        key = "t_" + key
    base, n = key, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    taken.add(key)
    return key


class ProxyModel(nn.Module):
    """Executes an ONNX graph with torch ops, node by node, in topological order.

    Float weights (initializers and Constant-node tensors) are `nn.Parameter`s in `self.weights`;
    `self.param_sources[key]` says which ONNX tensor each one came from. Integer, shape and scalar
    tensors are buffers. `forward` returns one tensor for a one-output graph, else a tuple.
    """

    def __init__(self, model: onnx.ModelProto, *, source: str = "<model>", front_end: frozenset[str] = frozenset()
                 ) -> None:
        super().__init__()
        self.source = source
        self.opset = default_opset(model)
        graph = model.graph
        values, origins = collect_constants(model, source)
        _check_tensor_types(model, origins, source)
        self.input_names = [i.name for i in graph.input if i.name not in values]
        self.output_names = [o.name for o in graph.output]
        self.input_elem_types = {i.name: int(i.type.tensor_type.elem_type) for i in graph.input}
        value_info = {v.name: v for v in [*graph.input, *graph.value_info, *graph.output]}
        ctx = ConvertContext(opset=self.opset, constants=values, value_info=value_info, source=source)
        self._front_end = front_end  # first outputs of the nodes onnxruntime runs (load.front_end)
        self._opsets = tuple(model.opset_import)

        self.nodes = nn.ModuleList()
        steps: list[tuple[onnx.NodeProto, tuple[str, ...], tuple[str, ...]]] = []
        static_uses: dict[str, bool] = {}  # tensor -> True while every use so far is static
        fusions = {f.anchor: f for f in find_fusions(graph, values)}
        fused_away = set().union(*(f.members for f in fusions.values())) - set(fusions)
        for index, node in enumerate(graph.node):
            if node.op_type == "Constant" and normalise_domain(node.domain) == "":
                continue
            if index in fused_away:
                continue
            fusion = fusions.get(index)
            with at_node(node):
                result = fusion.result if fusion is not None else self._convert(node, ctx)
            self.nodes.append(result.torch_module)
            mapping = result.onnx_mapping
            label = _FusedNode(node.name, fusion.op_type) if fusion is not None else node
            steps.append((label, tuple(mapping.inputs), tuple(mapping.outputs)))
            for pos, name in enumerate(mapping.inputs):
                if name in values:
                    static_uses[name] = static_uses.get(name, True) and pos in result.static_inputs

        self.weights = nn.ParameterDict()
        self.param_sources: dict[str, TensorSource] = {}
        self._tensor_keys: dict[str, str] = {}  # ONNX name -> parameter or buffer key
        taken: set[str] = set()
        for name, array in values.items():
            origin = origins[name]
            is_float = origin.onnx_dtype in FLOAT_TYPES
            tensor = self._to_tensor(array, origin.onnx_dtype)
            key = _safe_key(name, taken)
            self._tensor_keys[name] = key
            if is_float and array.size > 1 and not static_uses.get(name, False):
                self.weights[key] = nn.Parameter(tensor)
            else:
                self.register_buffer("c_" + key, tensor, persistent=True)
            self.param_sources[key] = origin
        self._steps = self._plan(steps)
        self.input_transforms: dict[int, InputTransform] = {}
        self._onnx_model = model  # read only, for writing trained weights back
        self.stored_types: dict[str, int] = {}  # ONNX name -> the type a weight is written in, where narrower

    def to_onnx(self) -> onnx.ModelProto:
        """A copy of the source ONNX model carrying this proxy's current weights."""
        return proxy_to_onnx(self, self._onnx_model)

    def _convert(self, node: onnx.NodeProto, ctx: ConvertContext):
        domain = normalise_domain(node.domain)
        opset = self.opset
        if node.output and node.output[0] in self._front_end:  # no converter, nothing trained before it
            return runtime_node_result(node, ctx, self._opsets)
        if domain:
            raise UnsupportedOpError(
                f"{self.source}: node '{node.name}' uses op {node.domain}::{node.op_type}, a custom-domain "
                f"op darp-onnx cannot convert; supported ops: {', '.join(supported_ops())}"
            )
        converter = get_converter(node.op_type, opset, domain)
        if converter is None and claimed_versions(node.op_type):
            since = resolve_since_version(node.op_type, opset)
            raise UnsupportedOpError(
                f"{self.source}: node '{node.name}' uses {node.op_type} at opset {opset} (schema version {since}), "
                f"which darp-onnx does not convert; it converts {node.op_type} schema versions "
                f"{claimed_versions(node.op_type)} (tested up to opset {MAX_TESTED_OPSET}): re-export the model "
                "at an older opset"
            )
        if converter is None:
            raise UnsupportedOpError(
                f"{self.source}: node '{node.name}' uses op {node.op_type} (opset {opset}), which darp-onnx "
                f"cannot convert; supported ops: {', '.join(supported_ops())}"
            )
        try:
            return converter(node, ctx)
        except (BadInputError, UnsupportedOpError):
            raise
        except NotImplementedError as exc:
            raise UnsupportedOpError(
                f"{self.source}: node '{node.name}' ({node.op_type}, opset {opset}): {exc}"
            ) from None

    @staticmethod
    def _to_tensor(array: np.ndarray, onnx_dtype: int) -> torch.Tensor:
        if array.dtype.kind == "U" or array.dtype == object:
            raise BadInputError("string tensors are not supported by darp-onnx")
        dtype = onnx_to_torch_dtype(onnx_dtype)
        return numpy_to_torch(np.array(array, copy=True)).to(dtype)

    def _plan(self, steps) -> list[Step]:
        last_use: dict[str, int] = {}
        for idx, (_, inputs, _) in enumerate(steps):
            for name in inputs:
                if name:
                    last_use[name] = idx
        keep = set(self.output_names) | set(self._tensor_keys)
        frees: dict[int, list[str]] = {}
        for name, idx in last_use.items():
            if name not in keep:
                frees.setdefault(idx, []).append(name)
        return [
            Step(node.name, node.op_type, inputs, outputs, tuple(frees.get(idx, ())))
            for idx, (node, inputs, outputs) in enumerate(steps)
        ]

    @property
    def steps(self) -> Sequence[Step]:
        return self._steps

    def add_outputs(self, names: Sequence[str]) -> list[str]:
        """Also return these intermediate tensors, after the graph outputs (training targets that the graph
        does not output); names no step writes are left out. Returns the names added."""
        written = {name for step in self._steps for name in step.outputs}
        added = [n for n in dict.fromkeys(names) if n in written and n not in self.output_names]
        self.output_names = [*self.output_names, *added]
        self._steps = [replace(step, free_after=tuple(n for n in step.free_after if n not in added))
                       for step in self._steps]
        return added

    def tensor(self, onnx_name: str) -> torch.Tensor:
        """The parameter or buffer that holds an ONNX constant tensor."""
        key = self._tensor_keys[onnx_name]
        if key in self.weights:
            return self.weights[key]
        return getattr(self, "c_" + key)

    @torch.no_grad()
    def round_to_stored(self) -> None:
        """Round each weight stored below float32 (float16, bfloat16, float8) to that precision: it trains in
        float32 and the written model stores it rounded, so the proxy must compute with the rounded values for
        the written model to equal it (a float16 MobileNetV4 fine-tuned differed by 4e-4 after the write)."""
        for key, weight in self.weights.items():
            source = self.param_sources[key]
            stored = onnx_to_torch_dtype(self.stored_types.get(source.name, source.onnx_dtype), compute=False)
            if stored.is_floating_point and stored.itemsize < weight.dtype.itemsize:
                weight.copy_(weight.to(stored).to(weight.dtype))

    def parameter_key(self, onnx_name: str) -> str | None:
        key = self._tensor_keys.get(onnx_name)
        return key if key is not None and key in self.weights else None

    def run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute every graph output from named inputs."""
        env = self._start_env(inputs)
        transforms = self.input_transforms
        step = None
        try:
            for idx, (step, module) in enumerate(zip(self._steps, self.nodes, strict=False)):
                _store(step, env, module(*_arguments(step, env, transforms.get(idx))))
        except Exception as exc:
            _name_failed_node(exc, step)
            raise
        return {name: env[name] for name in self.output_names}

    def run_together(self, runs: Sequence[Mapping[str, torch.Tensor]],
                     after_step: Callable[[int, nn.Module, list[Any]], list[Any]]) -> list[dict[str, torch.Tensor]]:
        """Every graph output of each of several runs (input sets), computed step by step across all of them:
        `after_step(index, module, results)` sees one step's results of every run and may replace them. For
        what a graph that cannot batch needs across its runs (BatchNorm statistics over all samples of a
        fixed-batch model, each layer's taken after the layers before it are set)."""
        envs = [self._start_env(inputs) for inputs in runs]
        transforms = self.input_transforms
        step = None
        try:
            for idx, (step, module) in enumerate(zip(self._steps, self.nodes, strict=False)):
                results = [module(*_arguments(step, env, transforms.get(idx))) for env in envs]
                for env, result in zip(envs, after_step(idx, module, results), strict=True):
                    _store(step, env, result)
        except Exception as exc:
            _name_failed_node(exc, step)
            raise
        return [{name: env[name] for name in self.output_names} for env in envs]

    def _start_env(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        env: dict[str, torch.Tensor] = {}
        for name in self._tensor_keys:
            env[name] = self.tensor(name)
        for name in self.input_names:
            if name not in inputs:
                raise BadInputError(f"{self.source}: missing value for graph input '{name}'")
            value = inputs[name]
            if not isinstance(value, torch.Tensor):
                value = numpy_to_torch(value)
            if value.dtype.is_floating_point and value.dtype.itemsize < 4:  # half and float8: float32
                value = value.float()
            env[name] = value
        return env

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor):
        if len(args) > len(self.input_names):
            raise BadInputError(
                f"{self.source}: got {len(args)} inputs, the graph takes {len(self.input_names)}"
            )
        named = dict(zip(self.input_names, args, strict=False))
        named.update(kwargs)
        outputs = self.run(named)
        values = tuple(outputs[name] for name in self.output_names)
        return values[0] if len(values) == 1 else values


def _check_tensor_types(model: onnx.ModelProto, origins: Mapping[str, TensorSource], source: str) -> None:
    """Refuse, naming the tensor, graph inputs and constants whose type torch cannot compute with."""
    for info in model.graph.input:
        if info.name in origins:
            continue
        if not info.type.HasField("tensor_type"):
            raise UnsupportedOpError(
                f"{source}: graph input '{info.name}' is not a tensor ({info.type.WhichOneof('value')}); "
                "darp-onnx converts tensor graphs only"
            )
        _check_elem_type(int(info.type.tensor_type.elem_type), f"graph input '{info.name}'", source)
    for name, origin in origins.items():
        _check_elem_type(origin.onnx_dtype, f"constant tensor '{name}'", source)


def _check_elem_type(elem_type: int, what: str, source: str) -> None:
    if elem_type == onnx.TensorProto.STRING:
        raise BadInputError(f"{source}: {what} is a string tensor; string tensors are not supported by darp-onnx")
    if elem_type and not is_supported_elem_type(elem_type):
        name = onnx.TensorProto.DataType.Name(elem_type)
        raise UnsupportedOpError(
            f"{source}: {what} has element type {name}, which darp-onnx cannot compute with (torch has no "
            "kernels for it); convert the model to a supported type (float, int8-int64, uint8, bool)"
        )


def build_proxy(model: onnx.ModelProto, *, source: str = "<model>", front_ends: bool = False) -> ProxyModel:
    """Convert a loaded ONNX model into a trainable `ProxyModel` (see `darp_onnx.load.io.load_model`).
    `front_ends`: nodes without a converter that no layer with weights comes before run with onnxruntime
    (load.front_end); without it they are refused as every op without a converter is."""
    front = frozenset(front_end_nodes(model, has_converter_in(model)) if front_ends else ())
    flow = [n for n in model.graph.node
            if n.op_type in ("If", "Loop", "Scan") and not (n.output and n.output[0] in front)]
    if flow:
        node = flow[0]
        raise UnsupportedOpError(
            f"{source}: node '{node.name}' uses control flow ({node.op_type}), which darp-onnx cannot "
            "convert; export the model without data-dependent control flow"
        )
    return ProxyModel(model, source=source, front_end=front)


def _arguments(step: Step, env: dict[str, torch.Tensor], transform: Callable | None) -> list[Any]:
    args = [env[name] if name else None for name in step.inputs]
    return transform(args) if transform is not None else args


def _name_failed_node(exc: Exception, step: Step | None) -> None:
    """A failure names the node it happened in (darp_onnx.failures)."""
    if step is not None and not isinstance(exc, DarpError):
        mark_node(exc, step.node_name, step.op_type)


def _store(step: Step, env: dict[str, torch.Tensor], result: Any) -> None:
    """A step's result(s) into the run's tensors; what no later step reads is dropped."""
    if len(step.outputs) == 1:
        env[step.outputs[0]] = result
    else:
        for name, value in zip(step.outputs, result, strict=False):
            if name:
                env[name] = value
    for name in step.free_after:
        env.pop(name, None)
