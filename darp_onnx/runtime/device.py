"""Choosing the device: `auto` uses CUDA only where both torch and onnxruntime really can."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import onnx
import onnxruntime as ort
import torch

from darp_onnx.errors import BadInputError, OptionError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    torch_device: str  # "cpu" or "cuda"
    ort_device: str  # "cpu" or "cuda" (a CUDA session is verified when it is built)
    reason: str


def cuda_usable() -> bool:
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


def choose_device(requested: str, *, probe: onnx.ModelProto | None = None, torch_needed: bool = True
                  ) -> DeviceChoice:
    """The one device resolver. `auto` takes CUDA only where torch (when `torch_needed`) and
    onnxruntime both can; with a `probe` model, only where an onnxruntime CUDA session of it really
    starts (`auto` then falls back to the CPU, `cuda` is an error)."""
    if requested not in DEVICES:
        raise OptionError("device", f"{{option}} {requested}: choose one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", "requested")
    if requested == "cuda" and torch_needed and not torch.cuda.is_available():
        raise OptionError("device", "{option} cuda: no usable CUDA GPU for torch here; use {option} cpu or auto")
    if requested == "auto" and not cuda_usable():
        return DeviceChoice("cpu", "cpu", "auto: no usable CUDA GPU, using the CPU")
    reason = "requested" if requested == "cuda" else "auto: a CUDA GPU is available"
    if probe is not None and not _cuda_session_starts(probe, required=requested == "cuda"):
        return DeviceChoice("cpu", "cpu", "auto: onnxruntime could not start a CUDA session, using the CPU")
    return DeviceChoice("cuda" if torch_needed or torch.cuda.is_available() else "cpu", "cuda", reason)


def _cuda_session_starts(probe: onnx.ModelProto, *, required: bool) -> bool:
    """Whether onnxruntime starts a CUDA session of `probe`; with `required`, the error when it does not.
    A model that does not load at all counts as starting: its own session reports that."""
    from darp_onnx.runtime.session import make_session

    ort.set_default_logger_severity(4)  # no onnxruntime lines while probing a provider that may not load
    try:
        make_session(probe, "cuda")
    except BadInputError:
        if required:
            raise
        return False
    except Exception:
        pass
    finally:
        ort.set_default_logger_severity(2)
    return True


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
