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
    return runs_batch_major(lambda feeds: _run(proxy, feeds, device), model, input_shapes, seed=seed)


def session_batch_major(session, model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]],
                        *, seed: int = 0) -> bool:
    """`is_batch_major` for an onnxruntime session (`validate`: a CRNN's time-major [64, N, 5531] output,
    concatenated along its time axis, failed on 144 samples and mixed samples and steps on 128)."""
    return runs_batch_major(lambda feeds: [torch.from_numpy(np.asarray(o, np.float32)) if np.issubdtype(
        np.asarray(o).dtype, np.number) else torch.zeros(0) for o in session.run(None, dict(feeds))],
        model, input_shapes, seed=seed, unless_one_fails=True)


def runs_batch_major(run, model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]], *,
                     seed: int = 0, unless_one_fails: bool = False) -> bool:
    """`run(feeds)` -> float tensors, one per output: batch 2 against two batch-1 runs (see `is_batch_major`).
    `unless_one_fails`: True where a batch-1 run fails (ICLabel takes samples in groups of 4: runs of one
    sample cannot replace the batches; what fails is said where the batches run)."""
    if fixes_first_dimension(model) or feeds_of_several(input_shapes):
        return False
    a = synthetic_inputs(model, batch=1, seed=seed, shapes=input_shapes)
    b = synthetic_inputs(model, batch=1, seed=seed + 1, shapes=input_shapes)
    if any(v.ndim == 0 for v in a.values()):
        return False  # a scalar input has no batch axis
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    try:
        first = run(a)
    except Exception:
        return unless_one_fails
    try:
        single = [torch.cat(pair) for pair in zip(first, run(b), strict=True)]
        paired = run(both)
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
