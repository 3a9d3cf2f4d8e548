"""`darp-onnx inspect MODEL`: op coverage, channel groups, MACs and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from darp_onnx.cli.app import app
from darp_onnx.cli.output import console_err, handle_errors, print_json


@app.command("inspect")
@handle_errors
def inspect_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to analyse.")],
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="NAME=1x3x320x320 for symbolic dims (repeatable).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Show which ops the proxy supports, the prunable channel groups and the model's cost."""
    from darp_onnx.api import inspect
    from darp_onnx.input_shapes import parse_input_shapes

    report = inspect(model, input_shapes=parse_input_shapes(input_shape or []))
    if json_out:
        print_json(report)
        return
    console_err.print(
        f"{model}: opset {report['opset']}, {report['nodes']} nodes, {report['macs']:,} MACs, "
        f"{report['params']:,} parameters; {report['prunable_groups']} prunable groups "
        f"({report['prunable_channels']} channels, {report['branches']} residual branches)"
    )
    if report["unsupported_ops"]:
        console_err.print(f"[yellow]ops the proxy cannot convert:[/] {', '.join(report['unsupported_ops'])}")
    table = Table(title="channel groups", show_lines=False)
    for column in ("id", "kind", "size", "label", "status"):
        table.add_column(column)
    for g in report["groups"]:
        status = "prunable" if g["frozen"] is None else f"frozen: {g['frozen']}"
        table.add_row(str(g["id"]), g["kind"], str(g["size"]), g["label"], status)
    console_err.print(table)
