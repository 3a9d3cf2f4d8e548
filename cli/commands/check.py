"""`darp-onnx check MODEL`: load a model, build its proxy and compare it with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from darp_onnx.cli.app import app
from darp_onnx.cli.options import AllowNonfinite, JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import handle_errors, print_json


@app.command("check")
@handle_errors
def check_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to read.")],
    batch: Annotated[int, typer.Option(help="Batch size for symbolic leading dims.")] = 2,
    input_shape: Annotated[list[str] | None, typer.Option(
        "--input-shape", help="NAME=1x3x320x320 for symbolic dims (repeatable; a bare shape for one-input "
                              "models); default: example sizes, as `inspect` counts at.")] = None,
    allow_nonfinite: AllowNonfinite = False,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Load MODEL, convert it to the trainable proxy and check the proxy against onnxruntime (CPU).

    Exit codes: 0 success, 1 bad input (unreadable model, unsupported op)."""
    from darp_onnx.api import check_model
    from darp_onnx.load.input_shapes import parse_input_shapes

    say = Verbosity(quiet=quiet, verbose=verbose)
    summary = check_model(model, batch=batch, allow_nonfinite=allow_nonfinite,
                          input_shapes=parse_input_shapes(input_shape or []))
    if json_out:
        print_json(summary)
    else:
        say.info(
            f"{model}: {summary['nodes']} nodes, {summary['parameters']} weight parameters, opset "
            f"{summary['opset']}; proxy vs onnxruntime max abs diff {summary['max_abs_diff']:.3g}"
        )
    say.elapsed("checked")
