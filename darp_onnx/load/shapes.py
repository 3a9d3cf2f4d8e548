"""Static shapes of every tensor for a concrete input size (batch 1 unless told otherwise)."""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import shape_inference

from darp_onnx.errors import BadInputError
from darp_onnx.load.inputs import graph_inputs, input_shape


def fix_input_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None, batch: int = 1
) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs have concrete dims (symbolic batch -> `batch`)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    wanted = {v.name: input_shape(v, batch, input_shapes) for v in graph_inputs(model)}
    for value in out.graph.input:
        if value.name not in wanted:
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in wanted[value.name]:
            dims.add().dim_value = int(size)
    del out.graph.value_info[:]
    for value in out.graph.output:
        value.type.tensor_type.ClearField("shape")
    return out


def static_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None, batch: int = 1
) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor whose dims shape inference can resolve to numbers."""
    fixed = fix_input_shapes(model, input_shapes, batch)
    try:
        inferred = shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise BadInputError(f"shape inference failed for the given input shapes: {exc}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        if all(d is not None for d in dims):
            shapes[value.name] = tuple(int(d) for d in dims)
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
    return shapes
