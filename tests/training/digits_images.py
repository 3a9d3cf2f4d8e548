"""Sample images for the data tests: the digits scans of sample_models/data written as PNG at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "sample_models" / "data" / "digits_source.npz"


def digit_pixels(count: int) -> np.ndarray:
    """[count, 32, 32] uint8 grey scans (the stored normalisation undone)."""
    with np.load(DIGITS) as data:
        x = data["train_input"][:count, 0] * data["std"] + data["mean"]
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def colour(grey: np.ndarray) -> np.ndarray:
    """A colour image whose three channels differ, so RGB/BGR order matters: [H, W, 3] uint8."""
    return np.stack([grey, 255 - grey, grey // 2], axis=-1)


def write_pngs(folder: Path, count: int, *, rgb: bool = False) -> list[np.ndarray]:
    """PNG files 00.png, 01.png, ... in sorted order; returns their pixel arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = [colour(p) if rgb else p for p in digit_pixels(count)]
    for i, array in enumerate(pixels):
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return pixels


def image_model(shape: list, elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A one-node model whose only input has `shape` (data loading reads nothing else)."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
