"""Search at a reduced input resolution: gates ranked on downscaled images, everything else at full size.

A fully convolutional network (global pooling before its classifier, or a dense output) computes the
same function at any input size, so the gates' ranking can be learnt on smaller images, where a step
costs about the square of the scale less. Whether the model is such a network is tested, not guessed:
the proxy must run at the reduced size. Extraction, budget (the cost model at full size), fine-tune and
validation stay at full resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from darp_onnx.errors import BadInputError, first_line
from darp_onnx.proxy import ProxyModel
from darp_onnx.training.dataset import Dataset

RESOLUTION_FLAG = "--search-resolution"
MIN_SIDE = 8  # pixels; below this, the downscaled images say little about the full-size ones


def _spatial_axes(array: np.ndarray) -> tuple[int, int] | None:
    """(H, W) axes of a 4-D float image batch: NCHW unless the last axis looks like channels."""
    if array.ndim != 4 or not np.issubdtype(array.dtype, np.floating):
        return None
    return (1, 2) if array.shape[3] in (1, 3, 4) and array.shape[1] not in (1, 3, 4) else (2, 3)


def _downscale(array: np.ndarray, scale: float) -> np.ndarray:
    axes = _spatial_axes(array)
    if axes is None:
        return array
    nchw = axes == (2, 3)
    tensor = torch.from_numpy(np.ascontiguousarray(array if nchw else array.transpose(0, 3, 1, 2))).float()
    size = [max(int(round(tensor.shape[d] * scale)), 1) for d in (2, 3)]
    small = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = small.numpy() if nchw else small.permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(out.astype(array.dtype))


def reduced_dataset(dataset: Dataset, scale: float) -> Dataset:
    """The data set with every 4-D float image input downscaled by `scale` (antialiased bilinear)."""
    return Dataset({k: _downscale(v, scale) for k, v in dataset.inputs.items()}, dataset.labels,
                   f"{dataset.source} at {scale:g}x", skipped=dataset.skipped, preprocess=dataset.preprocess)


def check_scale(scale: float) -> float:
    if not 0 < scale <= 1:
        raise BadInputError(f"{RESOLUTION_FLAG} {scale}: give a share of the input size in (0, 1] (1: full size)")
    return float(scale)


def reduced_search_data(proxy: ProxyModel, dataset: Dataset, scale: float,
                        device: torch.device | str = "cpu") -> tuple[Dataset | None, str]:
    """The downscaled data set when the proxy runs on it, else None; with the reason either way."""
    if scale >= 1:
        return None, "full resolution"
    sides = [v.shape[d] for v in dataset.inputs.values() if (axes := _spatial_axes(v)) for d in axes]
    if not sides:
        return None, "no 4-D float image input"
    if min(sides) * scale < MIN_SIDE:
        return None, f"inputs of {min(sides)} px would shrink below {MIN_SIDE} px"
    small = reduced_dataset(dataset, scale)
    feeds = {k: torch.from_numpy(v[:2]).to(device) for k, v in small.inputs.items()}
    try:
        with torch.no_grad():
            proxy.run(feeds)
    except Exception as exc:  # any op that needs the full size (fixed reshapes, position embeddings)
        return None, f"the model does not run at {scale:g}x ({type(exc).__name__}: {first_line(exc)[:80]})"
    return small, f"search at {scale:g}x resolution"
