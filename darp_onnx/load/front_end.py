"""Front ends the proxy cannot convert, run by onnxruntime inside it: nothing before them is trained.

A speech model that computes its spectrogram in the graph (an STFT or DFT op, a Loop that tf2onnx wrote for
tf.map_fn), a scikit-learn pipeline that scales its features first (ai.onnx.ml Scaler), an image model that
decodes or normalises its input with an op the proxy lacks: such a node reads only the inputs and constants,
or tensors computed from them with no layer with weights on the way. No gradient has to flow through it, so
the proxy runs it as written, with onnxruntime (`proxy/ops/runtime_node.py`), and the network after it is
pruned as any other. A node the proxy cannot convert after a layer with weights is not a front end: pruning
would have to train through it.
"""

from __future__ import annotations

import onnx

from darp_onnx.load.post_processing import constant_tensors, node_reads, weighted_layer
from darp_onnx.load.refusals import QUANTIZED_OPS


def has_converter_in(model: onnx.ModelProto):
    """A predicate: the proxy has a converter for this node of `model` (Constants are folded, not converted)."""
    from darp_onnx.load.io import default_opset
    from darp_onnx.load.stored_weights import dequantizes_a_constant
    from darp_onnx.proxy.registry import get_converter, normalise_domain

    opset = default_opset(model)
    initializers = {t.name for t in model.graph.initializer} - {i.name for i in model.graph.input}

    def has_converter(node: onnx.NodeProto) -> bool:
        domain = normalise_domain(node.domain)
        if (node.op_type == "Constant" and not domain) or dequantizes_a_constant(node, initializers):
            return True  # folded before the proxy is built (load.stored_weights)
        return not domain and get_converter(node.op_type, opset) is not None

    return has_converter


def front_end_nodes(model: onnx.ModelProto, has_converter) -> set[str]:
    """First output names of the nodes without a converter (`has_converter(node)` False) that no layer with
    weights comes before and a layer with weights comes after: the proxy runs them with onnxruntime. Quantized
    ops are never front ends (a quantized graph is refused as such)."""
    initializers = {t.name: t for t in model.graph.initializer}
    constants = constant_tensors(model)

    def weighted(node: onnx.NodeProto) -> bool:
        return weighted_layer(node, initializers, constants)

    before_weights: set[str] = set()  # tensors a layer with weights reads, directly or through other nodes
    for node in reversed(model.graph.node):
        if weighted(node) or set(node.output) & before_weights:
            before_weights.update(node_reads(node))
    after_weights: set[str] = set()  # tensors computed after a layer with weights
    found: set[str] = set()
    for node in model.graph.node:
        if weighted(node) or node_reads(node) & after_weights:
            after_weights.update(node.output)
            continue
        if (not has_converter(node) and node.op_type not in QUANTIZED_OPS and node.output
                and set(node.output) & before_weights):
            found.add(node.output[0])
    return found
