"""Small hand-written torch models: four image families (1x32x32 inputs, 5 classes) and a BERT-style
text encoder (token ids, 2 classes).

``build(name)`` returns a fresh (untrained) model; ``load_trained(name)`` adds the committed weights
from ``sample_models/weights/<name>.pt`` and puts the model in eval mode.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 5
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


# --- ResNet -------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.relu = nn.ReLU()
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64), blocks=(2, 2, 2), num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


# --- MobileNetV3 --------------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, exp: int, cout: int, k: int, se: bool, act: str, stride: int):
        super().__init__()
        Act = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:  # as in MobileNetV3, the first block has no expand conv
            layers += [*conv_bn(cin, exp, 1), Act()]
        layers += [*conv_bn(exp, exp, k, stride, groups=exp), Act()]
        if se:
            layers.append(SqueezeExcite(exp, max(8, (exp // 4 + 7) // 8 * 8)))
        layers += conv_bn(exp, cout, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


# (in, expand, out, kernel, squeeze-excite, activation, stride)
MBV3_CONFIG = [
    (16, 16, 16, 3, True, "RE", 1),
    (16, 64, 24, 3, False, "RE", 2),  # 8x8
    (24, 72, 24, 3, False, "RE", 1),
    (24, 96, 40, 5, True, "HS", 2),  # 4x4
    (40, 120, 40, 5, True, "HS", 1),
    (40, 120, 48, 5, True, "HS", 1),
    (48, 144, 48, 5, True, "HS", 1),
    (48, 192, 64, 5, True, "HS", 2),  # 2x2
]


class MobileNetV3(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, head: int = 192, hidden: int = 128):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16, 3, 2), nn.Hardswish())  # 16x16
        self.blocks = nn.Sequential(*(InvertedResidual(*cfg) for cfg in MBV3_CONFIG))
        self.head = nn.Sequential(*conv_bn(MBV3_CONFIG[-1][2], head, 1), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(head, hidden), nn.Hardswish(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.head(self.blocks(self.stem(x)))))


# --- YOLOv8 (classification backbone with a small FPN-style neck) ------------------------------


class Conv(nn.Module):
    """Conv-BN-SiLU, SiLU written as x * sigmoid(x)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1):
        super().__init__()
        self.conv, self.bn = conv_bn(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x * torch.sigmoid(x)


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        self.c = cout // 2
        self.cv1 = Conv(cin, 2 * self.c, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = Conv((2 + n) * self.c, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(torch.split(self.cv1(x), [self.c, self.c], dim=1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 5):
        super().__init__()
        self.cv1 = Conv(cin, cin // 2, 1)
        self.cv2 = Conv(cin // 2 * 4, cout, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class YOLOv8Cls(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, head: int = 128):
        super().__init__()
        self.stem = Conv(1, 16, 3, 2)  # 16x16
        self.stage3 = nn.Sequential(Conv(16, 32, 3, 2), C2f(32, 32, 1))  # 8x8, P3
        self.stage4 = nn.Sequential(Conv(32, 64, 3, 2), C2f(64, 64, 1), SPPF(64, 64))  # 4x4, P4
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.neck = C2f(64 + 32, 64, 1, shortcut=False)
        self.head = Conv(64, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.stage3(self.stem(x))
        p4 = self.stage4(p3)
        y = self.neck(torch.cat([self.up(p4), p3], dim=1))
        return self.linear(self.flatten(self.pool(self.head(y))))


# --- ViT ----------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim=64, depth=4, heads=4, mlp=128, patch=4, size=32, num_classes=NUM_CLASSES):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, 64, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# --- BERT-style text encoder ---------------------------------------------------------------------


class SelfAttention(nn.Module):
    """BERT's attention: separate Q, K, V projections, scaled scores plus an additive padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)  # [B, H, S, D]

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask_bias
        context = self.dropout(torch.softmax(scores, dim=-1)) @ v
        b, _, s, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Post-LN as in BERT: LayerNorm(x + Attention(x)), then LayerNorm(x + FFN(x))."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attention = SelfAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim), nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, mask_bias)))
        return self.norm2(x + self.ffn(x))


class TextEncoder(nn.Module):
    """A small BERT: token + position embeddings, post-LN encoder layers, tanh pooler on [CLS], classifier.

    Inputs are int64 `input_ids` and `attention_mask` [B, S] (1 = token, 0 = padding), S <= max_len."""

    def __init__(self, vocab=3000, dim=64, depth=4, heads=4, ffn=256, max_len=64, num_classes=2, dropout=0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn, dropout) for _ in range(depth))
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.dropout(self.norm(self.tokens(input_ids) + self.positions(positions)))
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


ARCHITECTURES = {"resnet": ResNet, "mobilenetv3": MobileNetV3, "yolov8": YOLOv8Cls, "vit": ViT}
TEXT_ARCHITECTURES = {"textenc": TextEncoder}  # int64 token inputs: made by make_samples.py's text part
FAMILIES = {
    "resnet": "ResNet (basic blocks)",
    "mobilenetv3": "MobileNetV3 (inverted residuals + SE)",
    "yolov8": "YOLOv8 (C2f + SPPF + upsample/concat neck, classification head)",
    "vit": "ViT (pre-LN transformer, explicit attention)",
    "textenc": "BERT-style text encoder (post-LN, separate Q/K/V, padding mask, [CLS] pooler)",
}


def build(name: str) -> nn.Module:
    """A fresh, untrained model of family `name` (one of ARCHITECTURES or TEXT_ARCHITECTURES)."""
    known = {**ARCHITECTURES, **TEXT_ARCHITECTURES}
    if name not in known:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(known)}")
    return known[name]()


def load_trained(name: str, weights_dir: Path | str = WEIGHTS_DIR) -> nn.Module:
    """`build(name)` with the saved state_dict loaded, in eval mode."""
    model = build(name)
    state = torch.load(Path(weights_dir) / f"{name}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
