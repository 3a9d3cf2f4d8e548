"""onnxruntime sessions: which providers a session really uses, not which are 'available'."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from darp_onnx.errors import BadInputError


def make_session(model: onnx.ModelProto | str, device: str = "cpu") -> ort.InferenceSession:
    """A session on `device` ('cpu' or 'cuda'). For 'cuda' the session must really run on CUDA:
    onnxruntime-gpu lists CUDA as available even where no GPU exists and silently falls back."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    payload = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(payload, options, providers=providers)
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise BadInputError(
            "--device cuda: onnxruntime could not start a CUDA session here (no usable GPU or CUDA/cuDNN "
            "libraries); use --device cpu or --device auto"
        )
    return session


def session_provider(session: ort.InferenceSession) -> str:
    return session.get_providers()[0]


def run_session(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, dict(feeds))
