"""The diff as GitHub-flavoured Markdown sized for a pull-request comment.

A summary table (MACs, parameters, nodes, latency, size and fidelity, before -> after with the change
in percent), then the resized layers, removed and added nodes and attribute changes; long lists are
folded into <details> blocks.
"""

from __future__ import annotations

from darp_onnx.report import fmt
from darp_onnx.report.model import GraphDiff

FOLD_AFTER = 10  # lists and tables longer than this are folded


def code(text: str) -> str:
    """An inline code span that is safe inside a table cell."""
    return "`" + str(text).replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def cell(text: str) -> str:
    """Plain text that is safe in a table cell (no HTML, no column breaks)."""
    return (
        str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        .replace("\n", " ")
    )


def _fold(title: str, body: list[str], count: int) -> list[str]:
    if count <= FOLD_AFTER:
        return [f"#### {title}", "", *body, ""]
    return [
        "<details>",
        f"<summary><b>{cell(title)}</b></summary>",
        "",
        *body,
        "",
        "</details>",
        "",
    ]


def _summary(diff: GraphDiff) -> list[str]:
    lines = ["| Metric | Before | After | Change |", "|---|---:|---:|---:|"]
    for label, change, render in fmt.summary_rows(diff):
        before, after = render(change.before), render(change.after)
        lines.append(f"| {label} | {before} | {after} | {fmt.percent(change)} |")
    for key, before, after, change in fmt.fidelity_rows(diff.fidelity):
        lines.append(f"| Fidelity: {cell(key)} | {before or '—'} | {after} | {change or '—'} |")
    return lines


def _resized(diff: GraphDiff) -> list[str]:
    lines = ["| Layer | Op | Out channels | In channels | MACs | Weights |", "|---|---|---:|---:|---:|---|"]
    macs = {row.name: row for row in diff.layers}
    for node in diff.resized:
        ch = node.channels
        out_ch = fmt.ratio(ch.out_before, ch.out_after) if ch else "—"
        in_ch = fmt.ratio(ch.in_before, ch.in_after) if ch else "—"
        row = macs.get(node.name)
        mac_text = f"{fmt.count(row.macs_before)} → {fmt.count(row.macs_after)}" if row else "—"
        weights = "<br>".join(
            f"{code(w.name_after)} {fmt.shape(w.shape_before)} → {fmt.shape(w.shape_after)}"
            for w in node.weights
        )
        name, op = code(node.name), cell(node.op_type)
        lines.append(f"| {name} | {op} | {out_ch} | {in_ch} | {mac_text} | {weights} |")
    return lines


def _node_list(nodes: list) -> list[str]:
    return [f"- {code(n.name)} ({cell(n.op_type)})" for n in nodes]


def _attributes(diff: GraphDiff) -> list[str]:
    lines = ["| Node | Op | Attribute | Before | After |", "|---|---|---|---|---|"]
    for change in diff.attribute_changes:
        lines.append(
            f"| {code(change.node)} | {cell(change.op_type)} | {code(change.attribute)} | "
            f"{cell(_value(change.before))} | {cell(_value(change.after))} |"
        )
    return lines


def _value(value: object) -> str:
    return "(absent)" if value is None else str(value)


def to_markdown(diff: GraphDiff) -> str:
    """The whole comment as one string (ends with a newline)."""
    lines = [f"### darp-onnx diff: {code(diff.label_before)} → {code(diff.label_after)}", ""]
    meta = [
        f"{key}: {code(value)}"
        for key, value in (("method", diff.method), ("provider", diff.provider), ("budget", diff.budget),
                           ("channels chosen by", fmt.extraction(diff.extraction)), ("run", fmt.run_line(diff.run)))
        if value is not None
    ]
    if meta:
        lines += [" · ".join(meta), ""]
    lines += [*_summary(diff), ""]
    ops = [f"{cell(op)} {c.before} → {c.after}" for op, c in diff.op_types.items() if c.changed]
    if ops:
        lines += ["Op types changed: " + ", ".join(ops), ""]
    if diff.unchanged:
        lines += ["No structural change: same nodes, weight shapes and attributes.", ""]
    if diff.resized:
        lines += _fold(f"Resized layers ({len(diff.resized)})", _resized(diff), len(diff.resized))
    if diff.removed:
        lines += _fold(f"Removed nodes ({len(diff.removed)})", _node_list(diff.removed), len(diff.removed))
    if diff.added:
        lines += _fold(f"Added nodes ({len(diff.added)})", _node_list(diff.added), len(diff.added))
    if diff.attribute_changes:
        count = len(diff.attribute_changes)
        lines += _fold(f"Attribute changes ({count})", _attributes(diff), count)
    for warning in diff.warnings:
        lines += [f"> **Warning:** {cell(warning)}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
