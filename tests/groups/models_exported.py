"""Synthetic models of what exporters write: shape sub-graphs (torch's TorchScript exporter with dynamic
axes), recurrent layers (CRNN text recognisers) and channels-last graphs (tf2onnx / keras2onnx).
Symbolic dims: N (batch), H, W (image), T (sequence)."""

from __future__ import annotations

import numpy as np
import onnx

from tests.groups.builder import GraphBuilder


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _dim(b: GraphBuilder, shape: str, index: int) -> str:
    """Shape -> Gather(index) -> Unsqueeze: one dim as a 1-element vector."""
    return b.op("Unsqueeze", b.op("Gather", shape, b.const(np.array(index, dtype=np.int64)), axis=0),
                b.const(_i64(0)))


def view_batch_flatten() -> onnx.ModelProto:
    """x.view(x.size(0), -1) before the classifier: Shape reads every dim, Gather keeps the batch."""
    b = GraphBuilder(21)
    h = b.cbr(b.input("x", ["N", 3, 4, 4]), 3, 6)
    target = b.op("Concat", _dim(b, b.op("Shape", h), 0), b.const(_i64(-1)), axis=0)
    return b.build(b.op("Gemm", b.op("Reshape", h, target), b.weight(6 * 16, 4), b.weight(4)))


def flatten_by_products() -> onnx.ModelProto:
    """x.view(n, c * h * w) with every size read at run time and multiplied."""
    b = GraphBuilder(22)
    h = b.cbr(b.input("x", ["N", 3, 4, 4]), 3, 5)
    shape = b.op("Shape", h)
    sizes = [b.op("Gather", shape, b.const(np.array(i, dtype=np.int64)), axis=0) for i in range(4)]
    features = b.op("Unsqueeze", b.op("Mul", b.op("Mul", sizes[1], sizes[2]), sizes[3]), b.const(_i64(0)))
    target = b.op("Concat", b.op("Unsqueeze", sizes[0], b.const(_i64(0))), features, axis=0)
    return b.build(b.op("Gemm", b.op("Reshape", h, target), b.weight(5 * 16, 3)))


def interpolate_to_shape() -> onnx.ModelProto:
    """FPN: F.interpolate(lateral, size=shallow.shape[2:]) with dynamic H, W, then Concat."""
    b = GraphBuilder(23)
    shallow = b.cbr(b.input("x", ["N", 3, "H", "W"]), 3, 4)
    deep = b.cbr(b.op("MaxPool", shallow, kernel_shape=[2, 2], strides=[2, 2]), 4, 6)
    lateral = b.conv(deep, 6, 5, 1)
    sizes = b.op("Concat",
                 b.op("Slice", b.op("Shape", lateral), b.const(_i64(0)), b.const(_i64(2)), b.const(_i64(0))),
                 b.op("Slice", b.op("Shape", shallow), b.const(_i64(2)), b.const(_i64(4)), b.const(_i64(0))),
                 axis=0)
    up = b.op("Resize", lateral, "", "", sizes, mode="nearest")
    return b.build(b.cbr(b.op("Concat", up, shallow, axis=1), 9, 3))


def view_channels_literal() -> onnx.ModelProto:
    """A detector head: x.view(b, C, -1).transpose(1, 2): the batch read at run time, C a literal."""
    b = GraphBuilder(24)
    h = b.cbr(b.input("x", ["N", 3, "H", "W"]), 3, 6)
    target = b.op("Concat", _dim(b, b.op("Shape", h), 0), b.const(_i64(6)), b.const(_i64(-1)), axis=0)
    tokens = b.op("Transpose", b.op("Reshape", h, target), perm=[0, 2, 1])
    return b.build(b.op("MatMul", tokens, b.weight(6, 5)))


def broadcast_like() -> onnx.ModelProto:
    """torch.full_like / expand_as: ConstantOfShape(Shape(h)) and Expand(ones, Shape(h)) join h."""
    b = GraphBuilder(25)
    h = b.cbr(b.input("x", ["N", 3, "H", "W"]), 3, 6)
    shape = b.op("Shape", h)
    half = onnx.numpy_helper.from_array(np.array([0.5], dtype=np.float32))
    filled = b.op("Add", h, b.op("ConstantOfShape", shape, value=half))
    ones = b.op("Expand", b.const(np.ones((1, 1, 1, 1), dtype=np.float32)), shape)
    return b.build(b.conv(b.op("Mul", filled, ones), 6, 3))


def channel_count_as_data() -> onnx.ModelProto:
    """The channel count read at run time feeds a Range (data, not a shape): the group must freeze."""
    b = GraphBuilder(26)
    h = b.cbr(b.input("x", ["N", 3, 4, 4]), 3, 6)
    count = b.op("Gather", b.op("Shape", h), b.const(np.array(1, dtype=np.int64)), axis=0)
    steps = b.op("Range", b.const(np.array(0, dtype=np.int64)), count, b.const(np.array(1, dtype=np.int64)))
    return b.build(b.conv(h, 6, 2), steps)


def crnn_lstm() -> onnx.ModelProto:
    """Conv features [N, C, 2, T] -> [N, 2C, T] -> [T, N, 2C] -> bidirectional LSTM -> Linear."""
    b = GraphBuilder(27)
    h = b.cbr(b.input("x", ["N", 1, 2, "T"]), 1, 4)
    seq = b.op("Transpose", b.op("Reshape", h, b.const(_i64(0, 8, -1))), perm=[2, 0, 1])
    hidden = 5
    y = b.op("LSTM", seq, b.weight(2, 4 * hidden, 8), b.weight(2, 4 * hidden, hidden), b.weight(2, 8 * hidden),
             hidden_size=hidden, direction="bidirectional")
    y = b.op("Reshape", b.op("Transpose", y, perm=[0, 2, 1, 3]), b.const(_i64(0, 0, -1)))
    return b.build(b.op("MatMul", y, b.weight(2 * hidden, 3)))


def gru_after_linear() -> onnx.ModelProto:
    """A Linear layer on [N, T, C], Transpose to [T, N, C], a GRU, Squeeze of the direction axis."""
    b = GraphBuilder(28, opset=17)
    h = b.op("Relu", b.op("MatMul", b.input("x", ["N", "T", 4]), b.weight(4, 6)))
    hidden = 3
    y = b.op("GRU", b.op("Transpose", h, perm=[1, 0, 2]), b.weight(1, 3 * hidden, 6),
             b.weight(1, 3 * hidden, hidden), hidden_size=hidden)
    return b.build(b.op("MatMul", b.op("Squeeze", y, b.const(_i64(1))), b.weight(hidden, 2)))


def channels_last() -> onnx.ModelProto:
    """tf2onnx: NHWC input, Transpose around each Conv, per-channel Mul/Add in NHWC, Flatten in NHWC
    order (Reshape [-1, H*W*C]) into a MatMul."""
    b = GraphBuilder(29)
    x = b.op("Transpose", b.input("x", ["N", 4, 4, 3]), perm=[0, 3, 1, 2])
    h = b.op("Transpose", b.conv(x, 3, 6), perm=[0, 2, 3, 1])
    h = b.op("Relu", b.op("Add", b.op("Mul", h, b.weight(6, positive=True)), b.weight(6)))
    h = b.op("Transpose", b.conv(b.op("Transpose", h, perm=[0, 3, 1, 2]), 6, 5), perm=[0, 2, 3, 1])
    flat = b.op("Reshape", b.op("Relu", h), b.const(_i64(-1, 4 * 4 * 5)))
    return b.build(b.op("Add", b.op("MatMul", flat, b.weight(80, 7)), b.weight(7)))


def channels_last_flatten() -> onnx.ModelProto:
    """keras2onnx: Flatten (axis 1) of an NHWC tensor into a Gemm."""
    b = GraphBuilder(30)
    x = b.op("Transpose", b.input("x", [1, 3, 3, 2]), perm=[0, 3, 1, 2])
    h = b.op("Transpose", b.op("Relu", b.conv(x, 2, 4)), perm=[0, 2, 3, 1])
    return b.build(b.op("Gemm", b.op("Flatten", h, axis=1), b.weight(36, 3), b.weight(3)))


def paddle_bias_reshape() -> onnx.ModelProto:
    """paddle2onnx: a Conv bias added as Reshape(b, [1, C, 1, 1]), squeeze-excitation scales likewise."""
    b = GraphBuilder(31)
    h = b.conv(b.input("x", ["N", 3, 6, 6]), 3, 6, bias=False)
    h = b.op("Relu", b.op("Add", h, b.op("Reshape", b.weight(6), b.const(_i64(1, 6, 1, 1)))))
    scale = b.op("Unsqueeze", b.weight(6, positive=True), b.const(_i64(1, 2)))
    return b.build(b.conv(b.op("Mul", h, scale), 6, 2))


def tokens_into_channels() -> onnx.ModelProto:
    """jax2tf: a Dense layer on [N, 8, 3], Reshape to [N, 2, 16] (4 tokens x 4 channels per row), a
    Slice over the whole axis, then a Dense layer."""
    b = GraphBuilder(32)
    h = b.op("Relu", b.op("MatMul", b.input("x", [1, 8, 3]), b.weight(3, 4)))
    rows = b.op("Reshape", h, b.const(_i64(1, 2, 16)))
    rows = b.op("Slice", rows, b.const(_i64(0)), b.const(_i64(2**62)), b.const(_i64(2)))
    return b.build(b.op("MatMul", rows, b.weight(16, 5)))


def unrolled_lstm_cell() -> onnx.ModelProto:
    """nn.LSTMCell in a Python loop (TorchScript): per step Gemm(x_t) + Gemm(h) -> Split in 4 gates,
    weights shared across steps, h0 = c0 = ConstantOfShape([batch, H]): the hidden units are prunable."""
    b = GraphBuilder(33)
    x = b.op("Relu", b.op("MatMul", b.input("x", [2, "N", 4]), b.weight(4, 6)))
    hidden = 3
    w_ih, b_ih, w_hh, b_hh = b.weight(4 * hidden, 6), b.weight(4 * hidden), b.weight(4 * hidden, hidden), \
        b.weight(4 * hidden)
    batch = _dim(b, b.op("Shape", x), 1)
    state = b.op("ConstantOfShape", b.op("Concat", batch, b.const(_i64(hidden)), axis=0))
    h, c = state, state
    for step in range(2):
        x_t = b.op("Gather", x, b.const(np.array(step, dtype=np.int64)), axis=0)
        gates = b.op("Add", b.op("Gemm", h, w_hh, b_hh, transB=1), b.op("Gemm", x_t, w_ih, b_ih, transB=1))
        i, f, g, o = b.op("Split", gates, b.const(_i64(hidden, hidden, hidden, hidden)), axis=1, outputs=4)
        c = b.op("Add", b.op("Mul", b.op("Sigmoid", f), c), b.op("Mul", b.op("Sigmoid", i), b.op("Tanh", g)))
        h = b.op("Mul", b.op("Sigmoid", o), b.op("Tanh", c))
    return b.build(b.op("Gemm", h, b.weight(2, hidden), transB=1))


def slice_view_bounds() -> onnx.ModelProto:
    """TorchScript STFT: x[:, :k] and x[:, k:] with bounds as Unsqueeze of scalar Constants."""
    b = GraphBuilder(34)
    h = b.cbr(b.input("x", ["N", 3, 6, 6]), 3, 8)

    def bound(v: int) -> str:
        return b.op("Unsqueeze", b.const(np.array(v, dtype=np.int64)), b.const(_i64(0)))

    real = b.op("Slice", h, bound(0), bound(5), b.const(_i64(1)))
    imag = b.op("Slice", h, bound(5), bound(8), b.const(_i64(1)))
    return b.build(b.op("Add", b.conv(real, 5, 2), b.conv(imag, 3, 2)))


MODELS = {f.__name__: f for f in (view_batch_flatten, flatten_by_products, interpolate_to_shape,
                                  view_channels_literal, broadcast_like, channel_count_as_data, crnn_lstm,
                                  gru_after_linear, channels_last, channels_last_flatten,
                                  paddle_bias_reshape, tokens_into_channels, unrolled_lstm_cell,
                                  slice_view_bounds)}


def channel_padding_shortcut(opset: int = 17, before: int = 0, mode: str = "constant") -> onnx.ModelProto:
    """A shortcut widened by zero channels to its block's width (MediaPipe's BlazeBlocks through
    tf2onnx, dlib's ResNets): Pad on the channel axis, then Add with the block's output."""
    b = GraphBuilder(31, opset)
    h = b.cbr(b.input("x", ["N", 3, 6, 6]), 3, 4)
    pads = [0, before, 0, 0, 0, 4 - before, 0, 0]
    if opset < 11:
        shortcut = b.op("Pad", h, pads=pads, mode=mode)
    else:
        shortcut = b.op("Pad", h, b.const(_i64(*pads)), mode=mode)
    block = b.op("Relu", b.conv(h, 4, 8))
    return b.build(b.cbr(b.op("Add", shortcut, block), 8, 3))


def spatial_transformer() -> onnx.ModelProto:
    """Features warped by a grid the network predicts from them (a spatial transformer, a flow warp)."""
    b = GraphBuilder(32, 16)
    h = b.cbr(b.input("x", ["N", 3, 6, 6]), 3, 4)
    grid = b.op("Tanh", b.op("Transpose", b.conv(h, 4, 2), perm=[0, 2, 3, 1]))
    warped = b.op("GridSample", h, grid, align_corners=0, mode="bilinear", padding_mode="border")
    return b.build(b.cbr(warped, 4, 3))


def group_norm(film: bool = False) -> onnx.ModelProto:
    """torch's GroupNorm as both exporters write it (8 channels in 4 groups): Reshape [0, G, -1],
    InstanceNormalization over each group, Reshape back to the input's shape read at run time, then the
    per-channel affine. With `film`, a Linear on a second input scales and shifts the normalised channels
    (a diffusion UNet's timestep embedding)."""
    b = GraphBuilder(33)
    h = b.conv(b.input("x", ["N", 3, 6, 6]), 3, 8)
    grouped = b.op("Reshape", h, b.const(_i64(0, 4, -1)))
    normed = b.op("InstanceNormalization", grouped, b.const(np.ones(4, np.float32)),
                  b.const(np.zeros(4, np.float32)), epsilon=1e-5)
    back = b.op("Reshape", normed, b.op("Shape", h))
    y = b.op("Add", b.op("Mul", back, b.weight(8, 1, 1)), b.weight(8, 1, 1))
    if film:
        scale, shift = b.op("Split", b.op("Gemm", b.input("t", ["N", 5]), b.weight(5, 16), b.weight(16)),
                            b.const(_i64(8, 8)), axis=1, outputs=2)
        y = b.op("Add", b.op("Mul", y, b.op("Unsqueeze", scale, b.const(_i64(2, 3)))),
                 b.op("Unsqueeze", shift, b.const(_i64(2, 3))))
    return b.build(b.conv(b.op("Relu", y), 8, 3))
