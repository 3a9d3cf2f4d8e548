"""onnxruntime sessions: which providers a session really uses, not which are 'available'."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort
import torch

from darp_onnx.errors import OptionError


def make_session(model: onnx.ModelProto | str, device: str = "cpu", threads: int = 0, *,
                 optimized: bool = True) -> ort.InferenceSession:
    """A session on `device` ('cpu' or 'cuda'), with `threads` intra-op threads (0: onnxruntime's
    default); `optimized` False runs the graph as written (no fusions). For 'cuda' the session must really
    run on CUDA: onnxruntime-gpu lists CUDA as available even where no GPU exists and silently falls back."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions, reported in our words; no log lines
    options.intra_op_num_threads = max(0, int(threads))
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    payload = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(payload, options, providers=providers)
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise OptionError(
            "device", "{option} cuda: onnxruntime could not start a CUDA session here (no usable GPU or CUDA/cuDNN "
                      "libraries); use {option} cpu or {option} auto"
        )
    return session


def session_provider(session: ort.InferenceSession) -> str:
    return session.get_providers()[0]


def run_session(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, dict(feeds))


def kernel_channel_multiple(device: str = "cpu") -> int:
    """Channel multiple the runtime's fast kernels want. On x86 CPUs onnxruntime runs convolutions in a
    blocked layout (NCHWc) of 16 channels with AVX-512 and 8 with AVX2, and pads or falls back to slower
    kernels for other widths; on CUDA, tensor cores work on multiples of 8. Elsewhere: 1 (no constraint
    is known)."""
    if device == "cuda":
        return 8
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AVX512" in capability:
        return 16
    if "AVX2" in capability:
        return 8
    return 1
