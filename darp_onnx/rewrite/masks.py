"""Checking keep masks against an analysis before rewriting."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from darp_onnx.errors import ValidationFailedError
from darp_onnx.groups.model import ChannelAnalysis


def complete_masks(analysis: ChannelAnalysis, masks: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Masks for every group (missing ones keep everything); raises on a mask the groups forbid."""
    full = analysis.all_kept()
    for gid, mask in masks.items():
        if not 0 <= gid < len(analysis.groups):
            raise ValidationFailedError(f"mask for unknown group {gid}")
        group = analysis.groups[gid]
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != (group.size,):
            raise ValidationFailedError(f"mask for group {gid} ({group.label}) has {mask.size} entries, "
                                        f"expected {group.size}")
        if group.frozen is not None and not mask.all():
            raise ValidationFailedError(f"group {gid} ({group.label}) is frozen: {group.frozen}")
        if mask.sum() < group.min_keep:
            raise ValidationFailedError(f"group {gid} ({group.label}) keeps {int(mask.sum())} channels, "
                                        f"at least {group.min_keep} required")
        full[gid] = mask
    return full
