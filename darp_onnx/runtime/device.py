"""Choosing the device: `auto` uses CUDA only where both torch and onnxruntime really can."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import onnxruntime as ort
import torch

from darp_onnx.errors import OptionError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    torch_device: str  # "cpu" or "cuda"
    ort_device: str  # "cpu" or "cuda" (a CUDA session is verified when it is built)
    reason: str


def cuda_usable() -> bool:
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


def choose_device(requested: str) -> DeviceChoice:
    if requested not in DEVICES:
        raise OptionError("device", f"{{option}} {requested}: choose one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", "requested")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device", "{option} cuda: no usable CUDA GPU for torch here; use {option} cpu or auto")
        return DeviceChoice("cuda", "cuda", "requested")
    if cuda_usable():
        return DeviceChoice("cuda", "cuda", "auto: a CUDA GPU is available")
    return DeviceChoice("cpu", "cpu", "auto: no usable CUDA GPU, using the CPU")


@contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 matmuls and convolutions on CUDA (no TF32), for outputs compared at tight
    tolerances with onnxruntime; TF32 is torch's default on Ampere and newer GPUs for convolutions."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
