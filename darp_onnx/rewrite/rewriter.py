"""`rewrite(model, analysis, masks)`: the pruned ONNX model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from darp_onnx.errors import ValidationFailedError
from darp_onnx.groups.model import ChannelAnalysis
from darp_onnx.rewrite.graph import drop_branches, remove_dead_nodes
from darp_onnx.rewrite.masks import complete_masks
from darp_onnx.rewrite.tensors import apply_shape_edits, slice_constants
from darp_onnx.validation.revalidate import revalidate


def rewrite(
    model: onnx.ModelProto, analysis: ChannelAnalysis, masks: Mapping[int, np.ndarray]
) -> onnx.ModelProto:
    """A new model with the channels `masks` drop removed and dropped residual branches cut out.
    `model` is not changed; raises ValidationFailedError (one line) when the result is not valid ONNX."""
    full = complete_masks(analysis, masks)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    try:
        drop_branches(out, analysis, full)
        slice_constants(out, analysis, full)
        apply_shape_edits(out, analysis, full)
        remove_dead_nodes(out)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationFailedError(f"rewrite failed: {type(exc).__name__}: {exc}") from None
    return revalidate(out, model.ir_version)
