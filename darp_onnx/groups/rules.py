"""The op rule table: which rule governs each ONNX op's channels (Torch-Pruning style, as data).

Kinds: source/sink (Conv, ConvTranspose, Gemm, MatMul with a constant weight), pass-through (unary
elementwise, activations, Dropout, Cast...), per-channel (BatchNorm, InstanceNorm, pooling), couple
(broadcasting binary ops: union-find), segment (Concat/Split/Slice), reshape (Flatten/Reshape/Squeeze/
Unsqueeze/Transpose), axis-bound (Softmax/LayerNorm/Reduce: freeze when over the channel axis).
Anything not in the table freezes its tracked inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from darp_onnx.groups import rules_attention as attention
from darp_onnx.groups import rules_axes as ax
from darp_onnx.groups import rules_basic as basic
from darp_onnx.groups import rules_linear as lin
from darp_onnx.groups import rules_recurrent as rnn
from darp_onnx.groups import rules_reshape as rs
from darp_onnx.groups import rules_segment as seg
from darp_onnx.groups.tracer import Tracer

Rule = Callable[[Tracer, onnx.NodeProto], None]

PASS_THROUGH = (
    "Abs Acos Acosh Asin Asinh Atan Atanh Cast CastLike Ceil Celu Clip Cos Cosh Dropout Elu Erf Exp Floor "
    "Gelu HardSigmoid HardSwish Identity IsInf IsNaN LeakyRelu Log Mish Neg Not Reciprocal Relu Round "
    "Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh ThresholdedRelu"
).split()
COUPLE = (
    "Add And BitwiseAnd BitwiseOr BitwiseXor Div Equal Greater GreaterOrEqual Less LessOrEqual Max Mean Min "
    "Mod Mul Or Pow Sub Sum Where Xor"
).split()
POOLING = "AveragePool GlobalAveragePool GlobalLpPool GlobalMaxPool LpPool MaxPool".split()
REDUCE = (
    "ArgMax ArgMin ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd "
    "ReduceSum ReduceSumSquare"
).split()

RULES: dict[str, Rule] = {
    **dict.fromkeys(PASS_THROUGH, basic.passthrough),
    **dict.fromkeys(COUPLE, basic.couple),
    **dict.fromkeys(POOLING, basic.pooling),
    **dict.fromkeys(REDUCE, ax.reduce),
    "PRelu": basic.couple,
    "BatchNormalization": basic.channel_norm,
    "InstanceNormalization": basic.channel_norm,
    "GridSample": basic.grid_sample,
    "Conv": lin.conv,
    "ConvTranspose": lin.conv_transpose,
    "Gemm": lin.gemm,
    "MatMul": lin.matmul,
    "Concat": seg.concat,
    "Split": seg.split,
    "Slice": seg.slice_,
    "Gather": seg.gather,
    "Reshape": rs.reshape,
    "Flatten": rs.flatten_like,
    "Squeeze": rs.flatten_like,
    "Unsqueeze": rs.flatten_like,
    "Transpose": rs.transpose,
    "Softmax": ax.softmax,
    "LogSoftmax": ax.softmax,
    "Hardmax": ax.softmax,
    "LayerNormalization": ax.layer_norm,
    "ReverseSequence": ax.reverse_sequence,
    "Shape": ax.shape_of,
    "Size": ax.shape_of,
    "Resize": ax.resize,
    "Upsample": ax.resize,
    "Pad": ax.pad,
    "Expand": ax.expand,
    "Tile": ax.tile,
    "ConstantOfShape": ax.constant_of_shape,
    "Constant": basic.passthrough,
    "LSTM": rnn.recurrent,
    "GRU": rnn.recurrent,
    "RNN": rnn.recurrent,
}

# Ops that mix channels of an input axis: the proxy gates their inputs (see gates.py).
SINK_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"})


def mixes_channels(op_type: str, pos: int, axis: int, rank: int) -> bool:
    """Whether sink `op_type` sums its input `pos` over tracked `axis` (so the proxy must gate it there).
    A MatMul only sums A's last and B's second-to-last axis: heads on a batch axis (Q K^T, attention x V)
    and rows passing through are gated later, where a sink reads them."""
    if op_type != "MatMul" or rank < 2:
        return True
    return axis % rank == (rank - 1 if pos == 0 else rank - 2)


def rule_for(node: onnx.NodeProto) -> Rule:
    if node.domain in ("", "ai.onnx", "com.microsoft") and node.op_type in attention.FUSED_ATTENTION:
        return attention.fused_attention
    if node.domain not in ("", "ai.onnx"):
        return basic.unknown
    return RULES.get(node.op_type, basic.unknown)
