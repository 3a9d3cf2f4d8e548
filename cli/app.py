"""The typer application: commands parse options, call the library and render; nothing else."""

from __future__ import annotations

from typing import Annotated

import typer

from darp_onnx import __version__
from darp_onnx.cli.output import console_err

app = typer.Typer(
    name="darp-onnx",
    help=(
        "Prune ONNX models at graph level with a differentiable architecture search (DARP).\n\n"
        "Exit codes: 0 success; 1 bad input, unsupported model or infeasible request; "
        "2 validation failure (nothing written)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"darp-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """darp-onnx: smaller, faster ONNX models, checked with onnxruntime."""


def main() -> None:
    try:
        app()
    finally:
        console_err.file.flush()


# Imported last: each command module adds its commands to `app` defined above.
from darp_onnx.cli import commands  # noqa: E402, F401
