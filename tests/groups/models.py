"""Synthetic models for the analysis and rewriter tests, one small function per pattern."""

from __future__ import annotations

import numpy as np
import onnx

from tests.groups.builder import GraphBuilder


def conv_chain() -> onnx.ModelProto:
    b = GraphBuilder(1)
    h = b.cbr(b.input("x", [1, 3, 8, 8]), 3, 6)
    h = b.cbr(h, 6, 5)
    return b.build(b.conv(h, 5, 4))


def residual() -> onnx.ModelProto:
    b = GraphBuilder(2)
    h = b.cbr(b.input("x", [1, 3, 8, 8]), 3, 8)
    r = b.op("Relu", b.op("Add", h, b.bn(b.conv(b.cbr(h, 8, 6), 6, 8), 8)))
    r2 = b.op("Add", r, b.bn(b.conv(b.cbr(r, 8, 4), 4, 8), 8))
    flat = b.op("Flatten", b.op("GlobalAveragePool", r2), axis=1)
    return b.build(b.op("Gemm", flat, b.weight(3, 8), b.weight(3), transB=1))


def c2f() -> onnx.ModelProto:
    """YOLOv8 C2f: conv -> Split in halves -> bottleneck (residual) on one half -> Concat -> conv."""
    b = GraphBuilder(3)
    h = b.cbr(b.input("x", [1, 3, 8, 8]), 3, 8)
    a, c = b.op("Split", h, b.const(np.array([4, 4], dtype=np.int64)), axis=1, outputs=2)
    d = b.op("Add", c, b.cbr(b.cbr(c, 4, 3), 3, 4))
    cat = b.op("Concat", a, c, d, axis=1)
    return b.build(b.cbr(cat, 12, 6))


def equal_split() -> onnx.ModelProto:
    b = GraphBuilder(4, opset=18)
    h = b.cbr(b.input("x", [1, 3, 6, 6]), 3, 8)
    a, c = b.op("Split", h, axis=1, outputs=2, num_outputs=2)
    return b.build(b.op("Add", b.conv(a, 4, 2), b.conv(c, 4, 2)))


def depthwise_se() -> onnx.ModelProto:
    """MobileNetV3-like: expand, depthwise, squeeze-excitation Mul, project, HardSwish."""
    b = GraphBuilder(5)
    h = b.op("HardSwish", b.bn(b.conv(b.input("x", [1, 3, 8, 8]), 3, 8, 1), 8))
    dw = b.op("Relu", b.bn(b.conv(h, 8, 8, 3, group=8), 8))
    s = b.op("GlobalAveragePool", dw)
    s = b.op("HardSigmoid", b.conv(b.op("Relu", b.conv(s, 8, 4, 1)), 4, 8, 1))
    se = b.op("Mul", dw, s)
    return b.build(b.bn(b.conv(se, 8, 5, 1), 5))


def flatten_gemm() -> onnx.ModelProto:
    """Flatten of NCHW into a Gemm: channel c is the block [c*H*W, (c+1)*H*W) of the features."""
    b = GraphBuilder(6)
    h = b.op("MaxPool", b.cbr(b.input("x", [1, 3, 4, 4]), 3, 5), kernel_shape=[2, 2], strides=[2, 2])
    f = b.op("Flatten", h, axis=1)
    g = b.op("Relu", b.op("Gemm", f, b.weight(5 * 4, 7), b.weight(7)))
    return b.build(b.op("Gemm", g, b.weight(3, 7), transB=1))


def reshape_matmul() -> onnx.ModelProto:
    """Patch embedding + ViT MLP: Conv -> Reshape -> Transpose -> MatMul+bias -> Gelu -> MatMul."""
    b = GraphBuilder(7)
    h = b.conv(b.input("x", [2, 3, 4, 4]), 3, 6, 1)
    t = b.op("Transpose", b.op("Reshape", h, b.const(np.array([2, 6, 16], dtype=np.int64))), perm=[0, 2, 1])
    m = b.op("Tanh", b.op("Add", b.op("MatMul", t, b.weight(6, 10)), b.weight(10)))
    m = b.op("Add", b.op("MatMul", m, b.weight(10, 6)), b.weight(6))
    out = b.op("Add", t, m)
    return b.build(b.op("MatMul", out, b.weight(6, 4)))


def reshape_flatten_const() -> onnx.ModelProto:
    """A Reshape target carrying the channel count (C*H*W)."""
    b = GraphBuilder(8)
    h = b.cbr(b.input("x", [2, 3, 4, 4]), 3, 5)
    f = b.op("Reshape", h, b.const(np.array([2, 80], dtype=np.int64)))
    return b.build(b.op("Gemm", f, b.weight(80, 4)))


def resize_concat() -> onnx.ModelProto:
    """FPN-like: upsample a deep feature and concat with a shallow one."""
    b = GraphBuilder(9)
    s = b.cbr(b.input("x", [1, 3, 8, 8]), 3, 4)
    d = b.cbr(b.op("MaxPool", s, kernel_shape=[2, 2], strides=[2, 2]), 4, 6)
    up = b.op("Resize", d, "", b.const(np.array([1, 1, 2, 2], dtype=np.float32)), mode="nearest")
    return b.build(b.cbr(b.op("Concat", up, s, axis=1), 10, 3))


def slice_channels() -> onnx.ModelProto:
    b = GraphBuilder(10)
    h = b.cbr(b.input("x", [1, 3, 6, 6]), 3, 8)
    lo = b.op("Slice", h, b.const(np.array([0], dtype=np.int64)), b.const(np.array([3], dtype=np.int64)),
              b.const(np.array([1], dtype=np.int64)))
    hi = b.op("Slice", h, b.const(np.array([3], dtype=np.int64)), b.const(np.array([100], dtype=np.int64)),
              b.const(np.array([1], dtype=np.int64)))
    return b.build(b.op("Concat", b.conv(lo, 3, 2), b.conv(hi, 5, 2), axis=1))


def unknown_op() -> onnx.ModelProto:
    """A LpNormalization over channels (not in the rule table) between two convs."""
    b = GraphBuilder(11)
    h = b.cbr(b.input("x", [1, 3, 6, 6]), 3, 4)
    h2 = b.cbr(h, 4, 5)
    return b.build(b.conv(b.op("LpNormalization", h2, axis=1), 5, 2))


def channel_output() -> onnx.ModelProto:
    """An intermediate conv output is also a graph output: its channels are frozen."""
    b = GraphBuilder(12)
    h = b.cbr(b.input("x", [1, 3, 6, 6]), 3, 4)
    h2 = b.cbr(h, 4, 5)
    return b.build(b.conv(h2, 5, 2), h)


def depthwise_upsample() -> onnx.ModelProto:
    """A learned per-channel upsampling (CenterNet-style heads): a depthwise ConvTranspose with a bias."""
    b = GraphBuilder(13)
    h = b.cbr(b.input("x", [1, 3, 6, 6]), 3, 6)
    up = b.op("ConvTranspose", h, b.weight(6, 1, 2, 2), b.weight(6), group=6, strides=[2, 2], kernel_shape=[2, 2])
    return b.build(b.conv(b.op("Relu", up), 6, 2))


MODELS = {f.__name__: f for f in (conv_chain, residual, c2f, equal_split, depthwise_se, flatten_gemm,
                                  reshape_matmul, reshape_flatten_const, resize_concat, slice_channels,
                                  unknown_op, channel_output, depthwise_upsample)}
