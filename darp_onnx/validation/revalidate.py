"""Re-validating a rewritten model: fresh strict shape inference and the full ONNX checker."""

from __future__ import annotations

import onnx

from darp_onnx.errors import ValidationFailedError, first_line


def revalidate(model: onnx.ModelProto, ir_version: int) -> onnx.ModelProto:
    """Clear stale value_info and output shapes, infer shapes strictly, check; one-line errors."""
    graph = model.graph
    del graph.value_info[:]
    declared = {}
    for out in graph.output:
        if out.type.HasField("tensor_type"):
            declared[out.name] = onnx.TypeProto()
            declared[out.name].CopyFrom(out.type)
            out.type.tensor_type.ClearField("shape")
    model.ir_version = ir_version
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        _restore_uninferred_outputs(inferred, declared)
        onnx.checker.check_model(inferred, full_check=True)
    except Exception as exc:
        raise ValidationFailedError(f"rewritten model is invalid: {first_line(exc)}") from None
    return inferred


def _restore_uninferred_outputs(model: onnx.ModelProto, declared: dict[str, onnx.TypeProto]) -> None:
    """Outputs whose shape inference cannot follow (a Reshape target computed at run time) keep the shape
    they were declared with: output channels are never pruned, so it still holds."""
    for out in model.graph.output:
        if out.name in declared and not out.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(declared[out.name])
