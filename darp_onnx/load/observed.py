"""Shapes as onnxruntime computes them: every tensor's shape in one run at the given input shapes.

This is the ground truth where static inference gives up (Reshape targets computed at run time from
`Shape -> Gather -> Concat`, exporter-specific ops). It also drives the independent MACs recount of
models whose shapes no static inference resolves.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from darp_onnx.load.shapes import fix_input_shapes


def _with_every_output(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    probe = fix_input_shapes(model, input_shapes, batch=1)
    for value in probe.graph.output:
        if value.type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
            value.ClearField("type")  # onnxruntime refuses type 0; with no type it infers one
    listed = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in listed:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))  # onnxruntime infers the type
                listed.add(name)
    return probe


def observe_shapes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                   input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shape of every node output (and input) in one onnxruntime CPU run on `feeds` (graph optimisations
    off, so no tensor is fused away). Raises what onnxruntime raises."""
    return observe_tensors(model, feeds, input_shapes)[0]


def observe_tensors(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], input_shapes: Mapping[str, tuple[int, ...]]
                    ) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """`observe_shapes`, and each tensor's ONNX element type (a value_info written from the observed shape
    needs one: onnxruntime refuses type 0)."""
    probe = _with_every_output(model, input_shapes)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failure here is reported (or noted) in our words, not in onnxruntime's log
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, dict(feeds)), strict=True))
    arrays = {name: v for name, v in values.items() if isinstance(v, np.ndarray)}
    arrays.update({name: np.asarray(v) for name, v in feeds.items()})
    shapes = {name: tuple(int(d) for d in v.shape) for name, v in arrays.items()}
    types = {name: _elem_type(v.dtype) for name, v in arrays.items()}
    return shapes, {name: t for name, t in types.items() if t is not None}


def _elem_type(dtype: np.dtype) -> int | None:
    try:
        return int(onnx.helper.np_dtype_to_tensor_dtype(dtype))
    except (KeyError, ValueError, TypeError):
        return None


def batch_axes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], input_shapes: Mapping[str, tuple[int, ...]],
               shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Per tensor, the axes whose size follows the batch: those that change when every input's first axis
    doubles (`shapes`: observed at `feeds`). Empty where the model does not run at the doubled batch (a
    fixed batch): its observed shapes are then the only ones."""
    doubled = {name: np.concatenate([v, v]) if np.ndim(v) > 0 else v for name, v in feeds.items()}
    sizes = {name: tuple(np.shape(v)) for name, v in doubled.items()}
    try:
        twice = observe_shapes(model, doubled, {**dict(input_shapes), **sizes})
    except Exception:  # onnxruntime refuses the doubled batch
        return {}
    axes = {}
    for name, dims in shapes.items():
        other = twice.get(name)
        if other is not None and len(other) == len(dims):
            varying = tuple(i for i, (a, b) in enumerate(zip(dims, other, strict=True)) if a != b)
            if varying:
                axes[name] = varying
    return axes
