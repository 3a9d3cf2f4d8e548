"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from darp_onnx.data import synthetic_inputs
from darp_onnx.io import default_opset, load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.runtime import make_session, run_session


def check_model(path: str | os.PathLike, *, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Load a model, build its proxy and compare the proxy's outputs with onnxruntime on CPU."""
    model = load_model(path)
    proxy = build_proxy(model, source=str(path))
    feeds = synthetic_inputs(model, batch=batch, seed=seed)
    expected = run_session(make_session(model), feeds)
    with torch.no_grad():
        actual = proxy.run({k: torch.from_numpy(v) for k, v in feeds.items()})
    diffs = [
        float(np.max(np.abs(actual[name].numpy().astype(np.float64) - np.asarray(e, dtype=np.float64))))
        if np.asarray(e).size
        else 0.0
        for name, e in zip(proxy.output_names, expected)
    ]
    return {
        "model": str(path),
        "opset": default_opset(model),
        "nodes": len(model.graph.node),
        "parameters": int(sum(p.numel() for p in proxy.parameters())),
        "max_abs_diff": max(diffs, default=0.0),
    }
