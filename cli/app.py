"""The typer application: commands parse options, call the library and render; nothing else."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from darp_onnx import __version__
from darp_onnx.cli.errors import describe, emit, is_expected, is_help_request, split_debug, wants_json
from darp_onnx.cli.output import console_err
from darp_onnx.runtime import distributed


class DarpGroup(TyperGroup):
    """The command group with one error path: whatever goes wrong, in parsing or in a command, ends as
    one line on stderr (JSON on stdout with --json) and its documented exit code; see `cli.errors`."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args, debug = split_debug(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
        except BaseException as exc:  # noqa: B036 - KeyboardInterrupt included: it too ends in one line
            if isinstance(exc, SystemExit):
                raise
            if debug and not is_expected(exc):  # the traceback, then the same line and exit code as without
                traceback.print_exception(exc, file=sys.stderr)
            if is_help_request(exc):  # a bare `darp-onnx`: the help is already printed
                return sys.exit(0) if standalone_mode else 0
            failure = describe(exc, prog_name or "darp-onnx")
            emit(failure, json_out=wants_json(args, exc))
            code = failure.code
        if standalone_mode:
            sys.exit(code)
        return code

app = typer.Typer(
    name="darp-onnx",
    help=(
        "Prune ONNX models at graph level with a differentiable architecture search (DARP).\n\n"
        "Exit codes: 0 success; 1 bad input, usage error, unsupported model, infeasible request or any other "
        "error (one line on stderr; with --json also {\"error\": {\"code\", \"message\", \"stage\"}} on "
        "stdout); 2 validation failure (nothing written); 130 interrupted (nothing written). "
        "--debug anywhere on the command line shows the traceback of unexpected errors."
    ),
    cls=DarpGroup,
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
    if distributed.launched():
        _main_distributed()
        return
    try:
        app()
    finally:
        console_err.file.flush()


def _main_distributed() -> None:
    """Under torchrun: every rank exits with the same code (the largest), after leaving the process group."""
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # an unexpected error: its traceback, then the same exit code on every rank
        traceback.print_exc()
        code = 1
    finally:
        console_err.file.flush()
    code = distributed.agree_exit_code(code)
    if code == distributed.EXIT_DISTRIBUTED:
        distributed.mark_peer_lost()  # a lost peer can hang the orderly shutdown: exit without it
    distributed.exit_process(code)


# Imported last: each command module adds its commands to `app` defined above.
from darp_onnx.cli import commands  # noqa: E402, F401
