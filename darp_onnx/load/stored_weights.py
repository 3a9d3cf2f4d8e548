"""Weights stored in another type: computed once from their initializers, so the analysis can prune them.

Some exports keep weights in a smaller type and compute the float weight at run time: a float16
initializer behind `Cast(to=float)` (a MobileNetV4 exported from a half-precision student), or an int8
one behind `Cast` -> `Mul(scale)` (weight-only quantization in a PP-OCRv6 recogniser). The channel analysis
slices constants, and a Conv whose weight is a node's output has no constant to slice: both models showed
0 prunable channels. The same holds for ONNX's own spelling of it, DequantizeLinear of an initializer (tf2onnx's
TFLite models with uint8 weights, refused as quantized before). Elementwise arithmetic on initializers only
(Cast, Mul, Div, Add, Sub), DequantizeLinear and Transpose of initializers (ALBERT's shared weights through
dynamo: stored once, transposed at run time, read as activations), and ops that only move float values
(`MOVING_OPS`: torch 1.x's LSTM weights) are folded here
into one initializer named after the node's output, as onnxruntime folds it when it loads the model (run
after `unshare`, which makes an Identity of an initializer one). A float16 weight that was only cast is
stored as float16 again in the written model (`restore_stored_types`, the proxy computing with the rounded
values); the others are written in the computed type (float32: larger on disk than int8).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from darp_onnx.load.order import node_reads

FOLDED_OPS = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}
# Ops that only move the values of float initializers: torch 1.x writes an LSTM's W, R and B as
# Unsqueeze(Concat(Slice(w), ...)) of its stored weights (the gates reordered); its input channels were
# frozen as "op not understood" (chineseocr_lite's CRNN). Computed by onnx's reference evaluator.
MOVING_OPS = {"Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Gather"}


def _dequantized(node: onnx.NodeProto, inputs: list[np.ndarray]) -> np.ndarray | None:
    """DequantizeLinear of a constant: (x - zero_point) * scale, per tensor or per axis (blocked: not folded)."""
    attrs = {a.name: a.i for a in node.attribute}
    x, scale = inputs[0], inputs[1]
    zero = inputs[2] if len(inputs) > 2 else np.zeros((), x.dtype)
    if attrs.get("block_size") or not np.issubdtype(x.dtype, np.integer) or not np.issubdtype(scale.dtype,
                                                                                                np.floating):
        return None
    if scale.ndim == 1 and scale.size > 1:  # per axis
        shape = [1] * x.ndim
        shape[attrs.get("axis", 1) % x.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.ndim else zero
    return ((x.astype(np.float64) - zero.astype(np.float64)) * scale).astype(scale.dtype)


def _moved(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    """A MOVING_OPS node on float initializers, computed at the model's opset (not growing the values)."""
    from onnx.reference import ReferenceEvaluator

    if not inputs or not np.issubdtype(inputs[0].dtype, np.floating):
        return None
    names = [f"in{k}" if name else "" for k, name in enumerate(node.input)]
    step = helper.make_node(node.op_type, names, ["out"], domain=node.domain)
    step.attribute.extend(node.attribute)
    graph = helper.make_graph([step], "fold", [], [helper.make_tensor_value_info("out", onnx.TensorProto.UNDEFINED,
                                                                                 None)],
                              [numpy_helper.from_array(v, n) for v, n in zip(inputs, [n for n in names if n],
                                                                             strict=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        (value,) = ReferenceEvaluator(model).run(None, {})
    except Exception:  # noqa: BLE001 - not folded: the analysis says what it cannot read
        return None
    value = np.asarray(value)
    return value if value.size <= sum(v.size for v in inputs) else None


def _value(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int = 17) -> np.ndarray | None:
    if node.op_type in MOVING_OPS:
        return _moved(node, inputs, opset)
    if node.op_type == "DequantizeLinear":
        return _dequantized(node, inputs)
    if node.op_type == "Transpose":  # dynamo's shared weights: stored [out, in] once, transposed per use
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        return np.transpose(inputs[0], perm) if np.issubdtype(inputs[0].dtype, np.floating) else None
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        target = None if to is None else helper.tensor_dtype_to_np_dtype(to)
        return None if target is None or not np.issubdtype(target, np.floating) else inputs[0].astype(target)
    if len(inputs) != 2 or inputs[0].dtype != inputs[1].dtype or not np.issubdtype(inputs[0].dtype, np.floating):
        return None
    out = FOLDED_OPS[node.op_type](inputs[0], inputs[1])
    return out if out.size <= max(a.size for a in inputs) else None  # never grow a constant by broadcasting


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The initializers not declared as inputs (those may be fed) and the values of Constant nodes: torch's
    exporter without constant folding gives each Slice of an LSTM weight its starts and ends as Constant nodes."""
    declared = {v.name for v in graph.input}
    found = {n.output[0]: a.t for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
             for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR}
    found.update((t.name, t) for t in graph.initializer if t.name not in declared)
    return found


def _foldable(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], outputs: set[str]) -> bool:
    return (node.domain in ("", "ai.onnx")
            and node.op_type in ("Cast", "DequantizeLinear", "Transpose", *FOLDED_OPS, *MOVING_OPS)
            and len(node.output) == 1 and node.output[0] not in outputs
            and all(name in inits for name in node.input if name) and len(node.input) > 0)


def dequantizes_a_constant(node: onnx.NodeProto, initializers: set[str]) -> bool:
    """Weight-only quantization as ONNX spells it (tf2onnx's TFLite models with uint8 weights): a
    DequantizeLinear of initializers only, folded here to a float weight."""
    return (node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx")
            and all(name in initializers for name in node.input if name))


def fold_stored_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, dict[str, int]]:
    """A copy of `model` with elementwise arithmetic on initializers folded (repeated: Cast, then Mul), the
    number of nodes folded, and the float16 weights that were only cast (name -> stored ONNX type); `model`
    itself is returned unchanged where there is none."""
    out: onnx.ModelProto | None = None
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    folded = 0
    stored: dict[str, int] = {}
    while True:
        graph = (out or model).graph
        inits = _constants(graph)
        outputs = {o.name for o in graph.output}
        done = []
        for node in graph.node:
            if not _foldable(node, inits, outputs):
                continue
            value = _value(node, [numpy_helper.to_array(inits[n]) for n in node.input if n], opset)
            if value is not None:
                done.append((node, value))
        if not done:
            return out or model, folded, stored
        if out is None:
            out = onnx.ModelProto()
            out.CopyFrom(model)
            continue  # find the nodes again in the copy
        stored.update(_cast_from_float16(done, inits))
        _replace(out.graph, done)
        folded += len(done)


def _cast_from_float16(done, inits: dict[str, onnx.TensorProto]) -> dict[str, int]:
    """The folds that only widened a float16 initializer to float32 (nothing else computed)."""
    found = {}
    for node, value in done:
        source = inits[node.input[0]]
        if node.op_type == "Cast" and source.data_type == onnx.TensorProto.FLOAT16 and value.dtype == np.float32:
            found[node.output[0]] = onnx.TensorProto.FLOAT16
    return found


def restore_stored_types(model: onnx.ModelProto, stored: dict[str, int]) -> int:
    """Store each weight of `stored` still in `model` (changed in place) in its original type again, cast back
    at run time as in the model given (`name__stored` -> Cast -> name); the number restored."""
    graph = model.graph
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    casts = []
    for init in graph.initializer:
        if init.name not in stored or stored[init.name] != onnx.TensorProto.FLOAT16:
            continue
        name, narrow = init.name, numpy_helper.to_array(init).astype(np.float16)
        fresh = f"{name}__stored"
        while fresh in taken:
            fresh += "_"
        taken.add(fresh)
        init.CopyFrom(numpy_helper.from_array(narrow, fresh))
        casts.append(helper.make_node("Cast", [fresh], [name], name=f"{fresh}_cast", to=onnx.TensorProto.FLOAT))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    return len(casts)


def _replace(graph: onnx.GraphProto, done: list[tuple[onnx.NodeProto, np.ndarray]]) -> None:
    """Each node becomes an initializer named after its output; the initializers and Constant nodes they read
    that nothing reads any more go (others are left as they are)."""
    consumed = {name for node, _ in done for name in node.input}
    for node, value in done:
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), node.output[0]))
        graph.node.remove(node)
    read = {name for n in graph.node for name in node_reads(n)} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name in consumed and t.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] in consumed - read]:
        graph.node.remove(node)
    stale = {node.output[0] for node, _ in done}  # value_info of a tensor that is now an initializer
    kept = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept)
