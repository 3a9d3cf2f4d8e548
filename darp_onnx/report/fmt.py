"""Number formatting shared by the Markdown, HTML and terminal renderings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from darp_onnx.report.model import Change

NA = "n/a"


def count(value: float | int | None) -> str:
    """12_345_678 -> '12.35M' (SI suffixes; exact below 10 000)."""
    if value is None:
        return NA
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v < 10_000:
        return f"{sign}{v:,.0f}" if float(v).is_integer() else f"{sign}{v:,.3g}"
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= limit:
            return f"{sign}{v / limit:.2f}{suffix}"
    return f"{sign}{v}"


def size(value: float | int | None) -> str:
    """Bytes as B / KiB / MiB / GiB."""
    if value is None:
        return NA
    v = float(value)
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(v) >= limit:
            return f"{v / limit:.2f} {suffix}"
    return f"{int(v)} B"


def ms(value: float | int | None) -> str:
    return NA if value is None else f"{value:.3g} ms"


def number(value: Any) -> str:
    """A fidelity-style value: floats to 4 significant digits, others as text."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return count(value)
    return str(value)


def percent(change: Change | None) -> str:
    """'-37.5 %', '+2.0 %', '0 %' or 'n/a'."""
    if change is None:
        return NA
    p = change.percent
    if p is None:
        if change.before == change.after and change.before is not None:
            return "0 %"
        return NA
    if p == 0:
        return "0 %"
    return f"{p:+.1f} %"


def ratio(before: int | None, after: int | None) -> str:
    """'5/8 (62 %)' for kept channels."""
    if before is None or after is None:
        return f"{NA if before is None else before} -> {NA if after is None else after}"
    if before == 0:
        return f"{after}/{before}"
    return f"{after}/{before} ({100 * after / before:.0f} %)"


def shape(dims: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def summary_rows(diff: Any) -> list[tuple[str, Change, Callable[[Any], str]]]:
    """(label, change, formatter) for the summary table; latency and file size only when known."""
    rows: list[tuple[str, Change, Callable[[Any], str]]] = [
        ("MACs", diff.macs, count),
        ("Parameters", diff.params, count),
        ("Nodes", diff.nodes, count),
    ]
    if diff.latency_ms is not None:
        rows.append(("Latency", diff.latency_ms, ms))
    if diff.file_bytes is not None:
        rows.append(("File size", diff.file_bytes, size))
    else:
        rows.append(("Serialized size", diff.serialized_bytes, size))
    return rows


def fidelity_rows(fidelity: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) rows. A metric given as {'before': x, 'after': y}, or as a pair of
    keys 'NAME_before' / 'NAME_after', fills both columns; a single value (e.g. top-1 agreement with the
    original) goes under 'after'. Metrics whose values are all None are left out."""
    merged: dict[str, Any] = {}
    for key, value in (fidelity or {}).items():
        key = str(key)
        for side in ("before", "after"):
            base = key.removesuffix(f"_{side}")
            if base != key and isinstance(merged.get(base, {}), dict):
                merged.setdefault(base, {})[side] = value
                break
        else:
            merged[key] = dict(value) if isinstance(value, dict) else value
    rows = []
    for key, value in merged.items():
        if isinstance(value, dict) and ("before" in value or "after" in value):
            before, after = value.get("before"), value.get("after")
            if before is None and after is None:
                continue
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
            change = percent(Change(before, after)) if numeric else ""
            rows.append((key, number(before), number(after), change))
        elif value is not None:
            rows.append((key, "", number(value), ""))
    return rows


def run_line(info: dict | None) -> str | None:
    """One line on what the prune run spent: seconds per stage, peak memory, samples and skipped images."""
    if not info:
        return None
    timings = info.get("timings") or {}
    parts = [", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items())] if timings else []
    resources, data = info.get("resources") or {}, info.get("data") or {}
    if resources.get("peak_rss_mib") is not None:
        parts.append(f"peak memory {resources['peak_rss_mib']:.0f} MiB")
    if resources.get("time_budget_s") is not None:
        parts.append(f"time budget {resources['time_budget_s']:.0f} s")
    if data:
        parts.append(f"{data.get('samples')} samples from {data.get('source')}"
                     + (f", {data['skipped']} image(s) skipped" if data.get("skipped") else ""))
    return "; ".join(parts) or None


def extraction(info: dict | None) -> str | None:
    """One line on how prune chose the channels: ranking, channel multiple, estimated latency."""
    if not info:
        return None
    text = f"{info.get('ranking', '?')}, channel multiple {info.get('channel_multiple', 1)}"
    before, after = info.get("estimated_latency_ms_before"), info.get("estimated_latency_ms_after")
    if before is not None and after is not None:
        text += f", estimated latency {before:.3g} -> {after:.3g} ms"
    return text
