"""Tiny torch transformer encoders exported by both torch exporters: the attention patterns the head
analysis must follow (split and fused QKV, explicit attention and scaled_dot_product_attention, pre-
and post-LN, an additive mask, erf and tanh GELU, dynamic batch and sequence axes)."""

from __future__ import annotations

import io
import warnings
from functools import lru_cache

import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

DIM, HEADS, FFN, LAYERS, SEQ = 32, 4, 64, 2, 8
BUCKETS = 6  # relative position buckets ("relbias"), a size no other dim has


class SplitAttention(nn.Module):
    """BERT-style: separate Q, K, V projections, views built from x.size() at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.head_dim = DIM // HEADS
        self.query, self.key, self.value = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, DIM)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size()[:-1] + (HEADS, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor, position_bias: torch.Tensor | None = None
                ) -> torch.Tensor:
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        mask_bias = mask_bias.expand(-1, HEADS, -1, -1)  # a mask broadcast to every head: num_heads in an Expand
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5) + mask_bias
        if position_bias is not None:  # MPNet, T5: one bias per head, the same tensor in every layer
            scores = scores + position_bias
        context = torch.matmul(scores.softmax(dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return self.out(context.view(context.size()[:-2] + (DIM,)))


class FusedAttention(nn.Module):
    """ViT-style: one QKV projection reshaped to [B, S, 3, H, D]; or chunked into three and run by
    scaled_dot_product_attention."""

    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.qkv, self.out = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        if self.sdpa:
            q, k, v = (t.reshape(b, s, HEADS, DIM // HEADS).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_bias)
        else:
            q, k, v = self.qkv(x).reshape(b, s, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4).unbind(0)
            attn = ((q @ k.transpose(-2, -1)) * (DIM // HEADS) ** -0.5 + mask_bias).softmax(dim=-1)
            context = attn @ v
        return self.out(context.transpose(1, 2).reshape(b, s, DIM))


class ViewAttention(nn.Module):
    """transformers >= 4.48 style: `view(*input_shape, -1, head_dim)`, so the graph never holds num_heads; the
    merge back is `reshape(*input_shape, -1)`. TorchScript names the heads dim afresh ('unk__3')."""

    def __init__(self) -> None:
        super().__init__()
        self.head_dim = DIM // HEADS
        self.query, self.key, self.value = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        input_shape = x.shape[:-1]
        hidden = (*input_shape, -1, self.head_dim)
        q, k, v = (p(x).view(hidden).transpose(1, 2) for p in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(2, 3)) * self.head_dim ** -0.5 + mask_bias
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).contiguous()
        return self.out(context.reshape(*input_shape, -1).contiguous())


class ShapeReadAttention(nn.Module):
    """nanoGPT style (rxnfp's BERT): `b, t, c = x.size()`, heads of width c // HEADS, merged back with
    `view(b, t, c)`; with a dynamic batch TorchScript reads c from the hidden states' shape at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        b, t, c = x.size()
        q, k, v = (p(x).view(b, t, HEADS, c // HEADS).transpose(1, 2) for p in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (DIM // HEADS) ** -0.5 + mask_bias
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).contiguous()
        return self.out(context.view(b, t, c))


class Layer(nn.Module):
    def __init__(self, attention: nn.Module, pre_ln: bool) -> None:
        super().__init__()
        self.attention, self.pre_ln = attention, pre_ln
        self.ln1, self.ln2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        gelu = nn.GELU(approximate="tanh" if pre_ln else "none")  # exported as Tanh/Pow/Mul or Erf patterns
        self.ffn = nn.Sequential(nn.Linear(DIM, FFN), gelu, nn.Linear(FFN, DIM))

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor, *position_bias: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.attention(self.ln1(x), mask_bias, *position_bias)
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attention(x, mask_bias, *position_bias))
        return self.ln2(x + self.ffn(x))


class Encoder(nn.Module):
    """Embedded tokens [B, S, DIM] and a 0/1 mask [B, S] -> pooled features [B, DIM]."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        make = {"split": SplitAttention, "fused": lambda: FusedAttention(False), "relbias": SplitAttention,
                "sdpa": lambda: FusedAttention(True), "view": ViewAttention, "shaped": ShapeReadAttention}[kind]
        self.layers = nn.ModuleList(Layer(make(), pre_ln=kind not in ("split", "relbias")) for _ in range(LAYERS))
        self.head = nn.Linear(DIM, 3)
        self.relative = nn.Embedding(BUCKETS, HEADS) if kind == "relbias" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask_bias = (1.0 - mask[:, None, None, :]) * -10000.0
        position_bias = () if self.relative is None else (self.position_bias(x),)
        for layer in self.layers:
            x = layer(x, mask_bias, *position_bias)
        return self.head(x.mean(dim=1))

    def position_bias(self, x: torch.Tensor) -> torch.Tensor:
        """MPNet's relative position bias: a [buckets, heads] table gathered by the distance between
        positions, [B, heads, S, S], computed once for every layer."""
        positions = torch.arange(x.shape[1])
        distance = (positions[None, :] - positions[:, None]).clamp(-(BUCKETS // 2), BUCKETS // 2 - 1)
        bias = self.relative(distance + BUCKETS // 2).permute(2, 0, 1).unsqueeze(0)
        return bias.expand(x.shape[0], -1, -1, -1)


KINDS = ("split", "fused", "sdpa")  # "view" (ViewAttention) has its own tests: no num_heads literal to edit

try:  # the dynamo exporter writes its graphs through onnxscript (in the dev extra)
    import onnxscript  # noqa: F401
    _NO_ONNXSCRIPT = ""
except ImportError:
    _NO_ONNXSCRIPT = "onnxscript is not installed: torch's dynamo exporter needs it (pip install -e .[dev])"

EXPORTERS = pytest.mark.parametrize(
    "dynamo", [False, pytest.param(True, marks=pytest.mark.skipif(bool(_NO_ONNXSCRIPT), reason=_NO_ONNXSCRIPT))],
    ids=["torchscript", "dynamo"])


@lru_cache(maxsize=8)
def exported(kind: str, dynamo: bool) -> bytes:
    """`export(kind, dynamo)` serialised, once per test session (the dynamo exporter takes seconds)."""
    return export(kind, dynamo).SerializeToString()


def export(kind: str, dynamo: bool, seed: int = 0) -> onnx.ModelProto:
    """The encoder of `kind` with seeded random weights, exported with dynamic batch and sequence axes."""
    torch.manual_seed(seed)
    model = Encoder(kind).eval()
    args = (torch.randn(2, SEQ, DIM), torch.ones(2, SEQ))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=64)
            program = torch.onnx.export(model, args, dynamo=True, opset_version=18, input_names=["x", "mask"],
                                        output_names=["y"], dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                                        verbose=False)
            return program.model_proto
        axes = {0: "batch", 1: "seq"}
        torch.onnx.export(model, args, buffer, dynamo=False, opset_version=17, input_names=["x", "mask"],
                          output_names=["y"], dynamic_axes={"x": axes, "mask": axes})
    return onnx.load_from_string(buffer.getvalue())


def loaded(kind: str, dynamo: bool) -> onnx.ModelProto:
    """The export as `darp_onnx.load.io.load_model` gives it to the analysis: with inferred shapes."""
    return onnx.shape_inference.infer_shapes(onnx.load_from_string(exported(kind, dynamo)), data_prop=True)
