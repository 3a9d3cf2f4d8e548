"""`darp-onnx diff A.onnx B.onnx`: what changed between two models (nodes, channels, MACs, params)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from darp_onnx.cli.app import app
from darp_onnx.cli.options import JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import console_err, console_out, handle_errors, print_json
from darp_onnx.errors import BadInputError
from darp_onnx.load.input_shapes import parse_input_shapes, shapes_text
from darp_onnx.report.model import Change, GraphDiff

SHOW_ROWS = 20  # rows of resized layers / removed nodes printed on the terminal


@app.command("diff")
@handle_errors
def diff_command(
    before: Annotated[Path, typer.Argument(help="The original ONNX model.")],
    after: Annotated[Path, typer.Argument(help="The changed (e.g. pruned) ONNX model.")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report to this file.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown report (a PR comment) to this file.")
    ] = None,
    json_out: JsonOut = False,
    input_shape: Annotated[
        list[str] | None,
        typer.Option(
            "--input-shape",
            help="Input size for the MACs count: NAME=1x3x32x32, or 1x3x32x32 for a single-input model. "
            "Repeatable.",
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Compare BEFORE with AFTER: removed, added and resized nodes, attribute changes, MACs, parameters.

    Exit codes: 0 success, 1 bad input (unreadable model, bad --input-shape or report path)."""
    from darp_onnx.api import diff as diff_api
    from darp_onnx.load.io import load_model, same_file
    from darp_onnx.load.preflight import check_report_files, write_texts
    from darp_onnx.report import diff_to_dict, to_html, to_markdown

    say = Verbosity(quiet=quiet, verbose=verbose)
    parsed = parse_input_shapes(input_shape)
    for out in (html, markdown):
        if out is not None and any(same_file(out, model) for model in (before, after)):
            raise BadInputError(f"{out}: is one of the input models; choose another report path")
    check_report_files({"--html": html, "--markdown": markdown})
    diff = diff_api(load_model(before), load_model(after), input_shapes=parsed, labels=(str(before), str(after)))
    diff.file_bytes = Change(os.path.getsize(before), os.path.getsize(after))
    write_texts({html: to_html(diff) if html else "", markdown: to_markdown(diff) if markdown else ""})
    for written in (html, markdown):
        if written is not None:
            say.info(f"wrote {escape(str(written))}")
    if json_out:
        print_json(diff_to_dict(diff))
    elif not quiet:
        render_terminal(diff, rows=None if verbose else SHOW_ROWS)
        if diff.input_shapes_from not in (None, "--input-shape"):
            say.report(f"MACs counted at {shapes_text(diff.input_shapes)}: {diff.input_shapes_from}")
    say.elapsed("compared")


def render_terminal(diff: GraphDiff, rows: int | None = SHOW_ROWS) -> None:
    """Rich tables on stdout: the summary, then resized layers and removed / added nodes (the first
    `rows` of each; all of them, and the attribute changes, when `rows` is None)."""
    from darp_onnx.report import fmt

    console_out.print(escape(f"{diff.label_before} → {diff.label_after}"), soft_wrap=True)
    summary = Table()
    for col, justify in (("Metric", "left"), ("Before", "right"), ("After", "right"), ("Change", "right")):
        summary.add_column(col, justify=justify)
    for label, change, render in fmt.summary_rows(diff):
        summary.add_row(label, render(change.before), render(change.after), fmt.percent(change))
    for key, before, after, change in fmt.fidelity_rows(diff.fidelity):
        summary.add_row(escape(f"fidelity: {key}"), before, after, change)
    console_out.print(summary)
    if diff.unchanged:
        console_out.print("No structural change: same nodes, weight shapes and attributes.")
    if diff.resized:
        table = Table(title=f"Resized layers ({len(diff.resized)})", title_justify="left")
        for col in ("Layer", "Op", "Out channels", "In channels"):
            table.add_column(col)
        for node in diff.resized[:rows]:
            ch = node.channels
            table.add_row(
                escape(node.name),
                node.op_type,
                fmt.ratio(ch.out_before, ch.out_after) if ch else "—",
                fmt.ratio(ch.in_before, ch.in_after) if ch else "—",
            )
        console_out.print(table)
        _more(len(diff.resized), rows)
    for title, nodes in (("Removed", diff.removed), ("Added", diff.added)):
        if nodes:
            listed = ", ".join(escape(f"{n.name} ({n.op_type})") for n in nodes[:rows])
            console_out.print(f"{title} nodes ({len(nodes)}): {listed}", soft_wrap=True)
            _more(len(nodes), rows)
    if diff.attribute_changes and rows is None:
        for ch in diff.attribute_changes:
            console_out.print(escape(f"attribute {ch.node} ({ch.op_type}).{ch.attribute}: {ch.before} -> {ch.after}"),
                              soft_wrap=True)
    elif diff.attribute_changes:
        console_out.print(f"Attribute changes: {len(diff.attribute_changes)} (see -v, --json or the reports)")
    for warning in diff.warnings:
        console_err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def _more(total: int, rows: int | None) -> None:
    if rows is not None and total > rows:
        console_out.print(f"… and {total - rows} more (see -v, --json, --markdown or --html)")
