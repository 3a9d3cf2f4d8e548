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
    probe = _with_every_output(model, input_shapes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, dict(feeds))
    shapes = {name: tuple(int(d) for d in np.shape(v)) for name, v in zip(names, values, strict=True)
              if isinstance(v, np.ndarray)}
    shapes.update({name: tuple(int(d) for d in v.shape) for name, v in feeds.items()})
    return shapes
