"""Graph outputs that onnx's shape inference leaves without a shape, given the one onnxruntime infers.

A tool that strips shape hints (for tract) declared PP-OCRv5's recogniser output with an empty shape; cleared
(`io.without_empty_output_shapes`), onnx's inference cannot give it back (the sizes come from Shape -> Reshape
sub-graphs it does not follow) and onnx.checker refuses a graph output with no shape at all, while
onnxruntime, which merges shapes leniently, knows it as [d0, ?, 18385]. Its shape becomes the declaration.
"""

from __future__ import annotations

import onnx

PROTOBUF_LIMIT = 2**31 - 1


def shapeless_outputs(model: onnx.ModelProto) -> list[str]:
    return [o.name for o in model.graph.output
            if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape")]


def with_onnxruntime_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each shapeless graph output declared as onnxruntime infers it (unknown sizes as unnamed
    dims); unchanged where there is none or onnxruntime cannot load the model. `model` is not modified."""
    missing = shapeless_outputs(model)
    if not missing or model.ByteSize() > PROTOBUF_LIMIT:
        return model
    shapes = _onnxruntime_shapes(model)
    if not any(name in shapes for name in missing):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.output:
        if value.name in missing and value.name in shapes:
            _declare(value, shapes[value.name])
    return fixed


def _onnxruntime_shapes(model: onnx.ModelProto) -> dict[str, list]:
    from darp_onnx.runtime.session import make_session

    try:
        session = make_session(model, "cpu", optimized=False)
    except Exception:  # noqa: BLE001 - the checker then says what is wrong, in its words
        return {}
    return {o.name: o.shape for o in session.get_outputs() if isinstance(o.shape, list)}


def _declare(value: onnx.ValueInfoProto, dims: list) -> None:
    shape = value.type.tensor_type.shape
    shape.SetInParent()
    for size in dims:
        dim = shape.dim.add()
        if isinstance(size, int) and size >= 0:
            dim.dim_value = size
        elif isinstance(size, str) and size:
            dim.dim_param = size
