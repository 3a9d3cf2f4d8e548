"""`darp-onnx inspect MODEL`: op coverage, channel groups, MACs and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from darp_onnx.cli.app import app
from darp_onnx.cli.options import JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import handle_errors, print_json

UNCONVERTIBLE_ADVICE = {False: "replace the op or export without it",
                        True: "a quantized graph: prune the float model, then quantize the pruned one"}


@app.command("inspect")
@handle_errors
def inspect_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to analyse.")],
    input_shape: Annotated[list[str] | None, typer.Option(
        "--input-shape", help="NAME=1x3x320x320 for symbolic dims (repeatable).")] = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Show which ops the proxy supports, the prunable channel groups and the model's cost.

    Exit codes: 0 success, 1 bad input (unreadable model, bad --input-shape)."""
    from darp_onnx.api import inspect
    from darp_onnx.load.input_shapes import parse_input_shapes, shapes_text

    say = Verbosity(quiet=quiet, verbose=verbose)
    report = inspect(model, input_shapes=parse_input_shapes(input_shape or []))
    if json_out:
        print_json(report)
        say.elapsed("inspected")
        return
    if not report["analysed"]:
        say.report(f"{model}: opset {report['opset']}, {report['nodes']} nodes, {report['params']:,} stored "
                   f"parameters; not analysed: `prune` cannot run it, its proxy cannot convert "
                   f"{', '.join(report['unsupported_ops'])} ({UNCONVERTIBLE_ADVICE[report['quantized']]})")
        _print_ops(say, report, verbose)
        say.elapsed("inspected")
        return
    say.report(
        f"{model}: opset {report['opset']}, {report['nodes']} nodes, {report['macs']:,} MACs, "
        f"{report['params']:,} parameters; {report['prunable_groups']} prunable groups "
        f"({report['prunable_channels']} channels, {report['prunable_heads']} attention heads, "
        f"{report['branches']} residual branches)"
    )
    if report["input_shapes_from"] not in (None, "--input-shape"):
        say.report(f"counted at {shapes_text(report['input_shapes'])}: {report['input_shapes_from']}")
    if report.get("control_flow"):
        say.report(report["control_flow"])
    if report.get("post_processing"):
        say.report(report["post_processing"])
    elif report["unsupported_ops"]:
        say.report(f"[yellow]ops the proxy cannot convert:[/] {', '.join(report['unsupported_ops'])}")
    _print_ops(say, report, verbose)
    table = Table(title="channel groups", show_lines=False)
    for column in ("id", "kind", "size", "label", "status", *(("members",) if verbose else ())):
        table.add_column(column)
    for g in report["groups"]:
        status = "prunable" if g["frozen"] is None else f"frozen: {g['frozen']}"
        members = (escape(", ".join(g["members"])),) if verbose else ()
        table.add_row(str(g["id"]), g["kind"], str(g["size"]), escape(g["label"]), escape(status), *members)
    say.report(table)
    say.elapsed("inspected")


def _print_ops(say: Verbosity, report: dict, verbose: bool) -> None:
    """The table of ops and whether the proxy converts each (with -v)."""
    if not verbose:
        return
    ops = Table(title="ops", title_justify="left")
    for column in ("op", "count", "supported"):
        ops.add_column(column)
    for op in report["ops"]:
        ops.add_row(escape(op["op"]), str(op["count"]), "yes" if op["supported"] else "[yellow]no[/]")
    say.report(ops)
