"""A tiny builder of synthetic ONNX graphs for the channel-analysis and rewriter tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10


class GraphBuilder:
    def __init__(self, seed: int = 0, opset: int = 17) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, name: str, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int, positive: bool = False) -> str:
        value = self.rng.uniform(0.1 if positive else -1, 1, size=shape).astype(np.float32)
        return self.const(value, "w")

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        name = self._name(op_type.lower())
        outs = [f"{name}_y{i}" if outputs > 1 else f"{name}_y" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs if outputs > 1 else outs[0]

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, bias: bool = True) -> str:
        ins = [x, self.weight(cout, cin // group, k, k)]
        if bias:
            ins.append(self.weight(cout))
        return self.op("Conv", *ins, group=group, pads=[k // 2] * 4, kernel_shape=[k, k])

    def bn(self, x: str, c: int) -> str:
        return self.op("BatchNormalization", x, self.weight(c), self.weight(c), self.weight(c),
                       self.weight(c, positive=True), epsilon=1e-5)

    def cbr(self, x: str, cin: int, cout: int, k: int = 3) -> str:
        return self.op("Relu", self.bn(self.conv(x, cin, cout, k, bias=False), cout))

    def build(self, *outputs: str) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "synthetic", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  ir_version=IR_VERSION)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
