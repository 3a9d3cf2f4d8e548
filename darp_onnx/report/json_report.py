"""The diff as a versioned JSON document (schema "darp-onnx/diff"; fields in docs/report-schema.md).

Version 1. A new optional field keeps the version; renaming, removing or changing the meaning of a
field bumps it. Numbers are plain JSON numbers; unknown values are null (never NaN).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from darp_onnx import __version__
from darp_onnx.report.model import Change, GraphDiff

SCHEMA = "darp-onnx/diff"
SCHEMA_VERSION = 1


def change_dict(change: Change | None) -> dict[str, Any] | None:
    if change is None:
        return None
    percent = change.percent
    return {
        "before": change.before,
        "after": change.after,
        "delta": change.delta,
        "percent": None if percent is None else round(percent, 3),
    }


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers, tuples to lists, NaN/inf to None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def diff_to_dict(diff: GraphDiff) -> dict[str, Any]:
    """The report document; key order is stable (schema fields first)."""
    summary = {
        "nodes": change_dict(diff.nodes),
        "macs": change_dict(diff.macs),
        "params": change_dict(diff.params),
        "serialized_bytes": change_dict(diff.serialized_bytes),
        "file_bytes": change_dict(diff.file_bytes),
        "latency_ms": change_dict(diff.latency_ms),
    }
    return plain(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "generator": f"darp-onnx {__version__}",
            "models": {"before": diff.label_before, "after": diff.label_after},
            "input_shapes": diff.input_shapes,
            "input_shapes_from": diff.input_shapes_from,
            "unchanged": diff.unchanged,
            "summary": summary,
            "fidelity": diff.fidelity,
            "provider": diff.provider,
            "method": diff.method,
            "budget": diff.budget,
            "extraction": diff.extraction,
            "run": diff.run,
            "op_types": {op: {"before": c.before, "after": c.after} for op, c in diff.op_types.items()},
            "matching": {
                "by_name": diff.matched_by_name,
                "by_position": [{"before": a, "after": b} for a, b in diff.matched_by_position],
            },
            "removed": diff.removed,
            "added": diff.added,
            "resized": diff.resized,
            "attribute_changes": diff.attribute_changes,
            "layers": diff.layers,
            "warnings": diff.warnings,
        }
    )


def to_json(diff: GraphDiff, *, indent: int | None = 2) -> str:
    return json.dumps(diff_to_dict(diff), indent=indent, allow_nan=False) + "\n"
