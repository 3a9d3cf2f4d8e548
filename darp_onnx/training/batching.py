"""Is a model batch-major? Exporters fix the batch (`Reshape` to [1, ...]) or write outputs that are
not indexed by sample (detections as [N, 6], time-major sequences), so a batch of 32 samples either
fails in the proxy or gives outputs whose first axis is not the sample. The test: the proxy on two
samples at once must equal the two single-sample runs concatenated, for every output."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import torch

from darp_onnx.load.inputs import graph_inputs, synthetic_inputs
from darp_onnx.proxy import ProxyModel


def _run(proxy: ProxyModel, feeds: Mapping[str, np.ndarray], device) -> list[torch.Tensor]:
    outs = proxy.run({k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in feeds.items()})
    return [outs[name].detach().float().cpu() for name in proxy.output_names]


@torch.no_grad()
def is_batch_major(proxy: ProxyModel, model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]],
                   *, device: torch.device | str = "cpu", seed: int = 0) -> bool:
    """True when the proxy at batch 2 equals two batch-1 runs concatenated along axis 0, and no input
    declares a fixed first dimension (onnxruntime refuses any other size there, though the proxy of a
    convolutional graph would run a batch)."""
    if fixes_first_dimension(model) or feeds_of_several(input_shapes):
        return False
    a = synthetic_inputs(model, batch=1, seed=seed, shapes=input_shapes)
    b = synthetic_inputs(model, batch=1, seed=seed + 1, shapes=input_shapes)
    if any(v.ndim == 0 for v in a.values()):
        return False  # a scalar input has no batch axis
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    try:
        single = [torch.cat(pair) for pair in zip(_run(proxy, a, device), _run(proxy, b, device), strict=True)]
        paired = _run(proxy, both, device)
    except Exception:  # a graph that fixes batch 1 fails at its first Reshape/Expand
        return False
    for x, y in zip(single, paired, strict=True):
        if x.shape != y.shape:
            return False
        scale = float(torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).abs().max()) + 1.0
        if not torch.allclose(x, y, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
            return False
    return True


def fixes_first_dimension(model: onnx.ModelProto) -> bool:
    """A positive first dimension; paddle2onnx writes -1 (dim_value) for a dynamic one, which onnxruntime
    runs at any size."""
    return any(len(dims) > 0 and dims[0].HasField("dim_value") and dims[0].dim_value > 0
               for dims in (value.type.tensor_type.shape.dim for value in graph_inputs(model)))


def feeds_of_several(input_shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """--input-shape gave some input a first axis of several: one such feed is one sample (ICLabel takes 4
    views of a sample and reshapes them to [4, -1]; it cannot run one row at a time)."""
    return any(len(dims) > 0 and dims[0] > 1 for dims in input_shapes.values())
