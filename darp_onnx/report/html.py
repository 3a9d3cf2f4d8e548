"""The diff as one self-contained HTML page: inline CSS and SVG only, no scripts, fonts or links.

The chart (`<svg id="channels-chart">`) has one row per matched weight layer: a `rect.kept` bar for
the output channels kept and a `rect.removed` bar for those pruned, each with a `<title>` tooltip.
"""

from __future__ import annotations

from html import escape

from darp_onnx.report import fmt
from darp_onnx.report.model import Change, GraphDiff

ROW_H = 18
LABEL_W = 230
BAR_W = 480
TEXT_W = 130
FOLD_AFTER = 12

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.92em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:150px}
.card .label{color:#59636e;font-size:.85em}.card .value{font-size:1.1em;margin-top:4px}
.down{color:#1a7f37}.up{color:#cf222e}.meta{color:#59636e}
svg text{font-size:11px;fill:#1f2328}
svg .label{font-family:ui-monospace,Menlo,Consolas,monospace}
rect.kept{fill:#2da44e}rect.removed{fill:#ff8182}rect.before{fill:#8c959f}rect.after{fill:#0969da}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
details{margin-top:1.6em}summary{cursor:pointer}summary h2{display:inline-block;margin:0}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _trend(change: Change | None) -> str:
    if change is None or change.percent is None or change.percent == 0:
        return ""
    return "down" if change.percent < 0 else "up"


def _cards(diff: GraphDiff) -> str:
    cards = []
    for label, change, render in fmt.summary_rows(diff):
        cards.append(
            f'<div class="card"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(render(change.before))} → {_e(render(change.after))}</div>'
            f'<div class="{_trend(change)}">{_e(fmt.percent(change))}</div></div>'
        )
    return '<div class="cards" id="summary">' + "".join(cards) + "</div>"


def _summary_chart(diff: GraphDiff) -> str:
    """Before/after bars for MACs, parameters and latency, each scaled to its own 'before'."""
    rows = [(n, c, f) for n, c, f in fmt.summary_rows(diff) if n in ("MACs", "Parameters", "Latency")]
    rows = [(n, c, f) for n, c, f in rows if c.before and c.after is not None]
    if not rows:
        return ""
    height = len(rows) * 2 * ROW_H + 10
    parts = [f'<svg id="summary-chart" width="{LABEL_W + BAR_W + TEXT_W}" height="{height}" role="img">']
    y = 5
    for name, change, render in rows:
        for side, value in (("before", change.before), ("after", change.after)):
            width = max(1.0, BAR_W * min(value / change.before, 1.5) / 1.5)
            tip = f"{name} {side}: {render(value)}"
            parts.append(
                f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end">{_e(name)} ({side})</text>'
                f'<rect class="{side}" x="{LABEL_W}" y="{y + 2}" width="{width:.1f}" height="{ROW_H - 5}">'
                f"<title>{_e(tip)}</title></rect>"
                f'<text x="{LABEL_W + width + 6:.1f}" y="{y + 12}">{_e(render(value))}</text>'
            )
            y += ROW_H
    parts.append("</svg>")
    return "".join(parts)


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def channels_chart(diff: GraphDiff) -> str:
    """The per-layer channels chart (kept vs removed), or a note when there are no weight layers."""
    rows = [r for r in diff.layers if r.channels_before]
    if not rows:
        return '<p id="channels-chart-empty">No weight layers (Conv, Gemm, MatMul with weights) matched.</p>'
    widest = max(r.channels_before or 0 for r in rows)
    height = len(rows) * ROW_H + 10
    parts = [
        f'<svg id="channels-chart" width="{LABEL_W + BAR_W + TEXT_W}" height="{height}" role="img" '
        f'aria-label="Output channels kept per layer">'
    ]
    for k, row in enumerate(rows):
        y = 5 + k * ROW_H
        before, after = row.channels_before or 0, row.channels_after or 0
        kept_w = BAR_W * after / widest
        cut_w = BAR_W * max(before - after, 0) / widest
        where = f'data-layer="{_e(row.name)}"'
        weight = f", weight {row.weight}" if row.weight else ""
        parts.append(
            f'<text class="label" x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end">{_e(_short(row.name))}'
            f"<title>{_e(row.name)} ({_e(row.op_type)}{_e(weight)})</title></text>"
        )
        parts.append(
            f'<rect class="bar kept" {where} x="{LABEL_W}" y="{y + 2}" width="{kept_w:.1f}" '
            f'height="{ROW_H - 5}"><title>{_e(row.name)}: {after} of {before} output channels kept'
            f"</title></rect>"
        )
        if cut_w > 0:
            parts.append(
                f'<rect class="bar removed" {where} x="{LABEL_W + kept_w:.1f}" y="{y + 2}" '
                f'width="{cut_w:.1f}" height="{ROW_H - 5}"><title>{_e(row.name)}: '
                f"{before - after} of {before} output channels removed</title></rect>"
            )
        text_x = LABEL_W + kept_w + cut_w + 6
        parts.append(f'<text x="{text_x:.1f}" y="{y + 12}">{_e(fmt.ratio(before, after))}</text>')
    parts.append("</svg>")
    legend = (
        '<p class="legend"><span style="background:#2da44e"></span>kept'
        '<span style="background:#ff8182"></span>removed</p>'
    )
    return legend + "".join(parts)


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    out = ["<table><thead><tr>", *(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head)), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(title: str, body: str, count: int, anchor: str) -> str:
    heading = f"<h2>{_e(title)}</h2>"
    if count > FOLD_AFTER:
        return f'<details id="{anchor}"><summary>{heading}</summary>{body}</details>'
    return f'<section id="{anchor}">{heading}{body}</section>'


def _resized(diff: GraphDiff) -> str:
    layers = {row.name: row for row in diff.layers}
    rows = []
    for node in diff.resized:
        ch, row = node.channels, layers.get(node.name)
        weights = "<br>".join(
            f"<code>{_e(w.name_after)}</code> {_e(fmt.shape(w.shape_before))} → "
            f"{_e(fmt.shape(w.shape_after))}"
            for w in node.weights
        )
        rows.append([
            f"<code>{_e(node.name)}</code>",
            _e(node.op_type),
            _e(fmt.ratio(ch.out_before, ch.out_after)) if ch else "—",
            _e(fmt.ratio(ch.in_before, ch.in_after)) if ch else "—",
            _e(f"{fmt.count(row.macs_before)} → {fmt.count(row.macs_after)}") if row else "—",
            weights,
        ])
    return _table(["Layer", "Op", "Out channels", "In channels", "MACs", "Weights"], rows, {2, 3, 4})


def _nodes(nodes: list) -> str:
    rows = [[f"<code>{_e(n.name)}</code>", _e(n.op_type), str(n.index)] for n in nodes]
    return _table(["Node", "Op", "Index"], rows, {2})


def _attributes(diff: GraphDiff) -> str:
    def value(v: object) -> str:
        return _e("(absent)" if v is None else v)

    rows = [
        [f"<code>{_e(c.node)}</code>", _e(c.op_type), f"<code>{_e(c.attribute)}</code>", value(c.before),
         value(c.after)]
        for c in diff.attribute_changes
    ]
    return _table(["Node", "Op", "Attribute", "Before", "After"], rows)


def _lists(diff: GraphDiff) -> list[str]:
    """The resized / removed / added / attribute sections that have entries, then the op-type counts."""
    parts = []
    for title, items, render, anchor in (
        ("Resized layers", diff.resized, _resized, "resized"),
        ("Removed nodes", diff.removed, lambda d: _nodes(d.removed), "removed"),
        ("Added nodes", diff.added, lambda d: _nodes(d.added), "added"),
        ("Attribute changes", diff.attribute_changes, _attributes, "attributes"),
    ):
        if items:
            parts.append(_section(f"{title} ({len(items)})", render(diff), len(items), anchor))
    ops = [[_e(op), str(c.before), str(c.after)] for op, c in diff.op_types.items()]
    op_table = _table(["Op", "Before", "After"], ops, {1, 2})
    parts.append(_section("Op types", op_table, FOLD_AFTER + 1, "op-types"))  # always folded
    return parts


def to_html(diff: GraphDiff) -> str:
    """The whole page as one string."""
    title = f"darp-onnx diff: {diff.label_before} → {diff.label_after}"
    body = [f"<h1>{_e(title)}</h1>"]
    meta = [f"{k}: <code>{_e(v)}</code>" for k, v in
            (("method", diff.method), ("provider", diff.provider), ("budget", diff.budget),
             ("channels chosen by", fmt.extraction(diff.extraction)), ("run", fmt.run_line(diff.run)))
            if v is not None]
    if meta:
        body.append(f'<p class="meta">{" · ".join(meta)}</p>')
    body += [_cards(diff), _summary_chart(diff)]
    fidelity = fmt.fidelity_rows(diff.fidelity)
    if fidelity:
        rows = [[_e(k), _e(b or "—"), _e(a), _e(c or "—")] for k, b, a, c in fidelity]
        table = _table(["Metric", "Before", "After", "Change"], rows, {1, 2, 3})
        body.append(f'<h2 id="fidelity">Fidelity</h2>{table}')
    if diff.unchanged:
        body.append("<p><b>No structural change</b>: same nodes, weight shapes and attributes.</p>")
    body.append("<h2>Output channels kept per layer</h2>" + channels_chart(diff))
    body += _lists(diff)
    body += [f'<p class="warn">{_e(warning)}</p>' for warning in diff.warnings]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )
