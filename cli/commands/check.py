"""`darp-onnx check MODEL`: load a model, build its proxy and compare it with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from darp_onnx.cli.app import app
from darp_onnx.cli.output import console_err, handle_errors, print_json


@app.command("check")
@handle_errors
def check_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to read.")],
    batch: Annotated[int, typer.Option(help="Batch size for symbolic leading dims.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Load MODEL, convert it to the trainable proxy and check the proxy against onnxruntime (CPU)."""
    from darp_onnx.api import check_model

    report = check_model(model, batch=batch)
    if json_out:
        print_json(report)
        return
    console_err.print(
        f"{model}: {report['nodes']} nodes, {report['parameters']} weight parameters, opset {report['opset']}; "
        f"proxy vs onnxruntime max abs diff {report['max_abs_diff']:.3g}"
    )
