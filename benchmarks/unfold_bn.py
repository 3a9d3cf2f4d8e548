"""A sample CNN as paddle2onnx writes CNNs: BatchNormalization kept as a node after each Conv without bias.

Every Conv(W, b) becomes Conv(W) -> BatchNormalization whose running statistics are the convolution's
output moments on the given samples (what a trained BatchNorm's are) and whose scale and bias give back
exactly the folded layer's output. Used by `benchmarks/quality.py --unfold-bn`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from darp_onnx.validation.checks import run_model

EPS = 1e-5


def unfold_batchnorm(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The same function with a BatchNormalization node after every biased 4-D Conv."""
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) == 3 and n.input[2]]
    outputs = _conv_outputs(model, convs, feeds)
    inits = {t.name: t for t in model.graph.initializer}
    unfolded = onnx.ModelProto()
    unfolded.CopyFrom(model)
    nodes = []
    for node in model.graph.node:
        if node.output[0] not in outputs:
            nodes.append(node)
            continue
        nodes.extend(_conv_and_batchnorm(node, outputs[node.output[0]], inits[node.input[2]], unfolded))
    del unfolded.graph.node[:]
    unfolded.graph.node.extend(nodes)
    used = {name for n in nodes for name in n.input}
    kept = [t for t in unfolded.graph.initializer if t.name in used]
    del unfolded.graph.initializer[:]
    unfolded.graph.initializer.extend(kept)
    onnx.checker.check_model(unfolded)
    return unfolded


def _conv_outputs(model: onnx.ModelProto, convs: list, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for node in convs:
        probe.graph.output.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    values = run_model(probe, feeds, "cpu", "unfold_batchnorm")[0]
    return {node.output[0]: value for node, value in zip(convs, values, strict=True) if value.ndim == 4}


def _conv_and_batchnorm(node, output: np.ndarray, bias_tensor, model: onnx.ModelProto) -> list:
    bias = numpy_helper.to_array(bias_tensor).astype(np.float64)
    raw = output.astype(np.float64) - bias.reshape(1, -1, 1, 1)
    mean, var = raw.mean((0, 2, 3)), raw.var((0, 2, 3))
    values = {"scale": np.sqrt(var + EPS), "bias": mean + bias, "mean": mean, "var": var}
    names = []
    for role, value in values.items():
        name = f"{node.name or node.output[0]}_bn_{role}"
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        names.append(name)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    conv = helper.make_node("Conv", list(node.input[:2]), [f"{node.output[0]}_raw"], name=node.name, **attrs)
    norm = helper.make_node("BatchNormalization", [conv.output[0], *names], [node.output[0]],
                            name=f"{node.name or node.output[0]}_bn", epsilon=EPS)
    return [conv, norm]
