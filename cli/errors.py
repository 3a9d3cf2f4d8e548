"""One error path: every failure is one line on stderr, a documented exit code and, with --json, a JSON
document on stdout (`{"error": {"code", "message", "stage"}}`, and `details` where the error has numbers a
script can act on: the drift gate's measured error).

Exit codes: 0 success; 1 bad input, a usage error, an unsupported model, an infeasible request or any
other error; 2 a validation failure (nothing written); 130 interrupted (nothing written). An error that
is not a `DarpError` is a bug: its line says so and `--debug` (anywhere on the command line) shows the
traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import typer
from rich.markup import escape

from darp_onnx.errors import EXIT_BAD_INPUT, DarpError, ValidationFailedError

EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"
JSON_FLAG = "--json"
JSON_ATTRIBUTE = "darp_onnx_json"  # set on an exception by `handle_errors` when the command had --json


@dataclass(frozen=True)
class Failure:
    code: int
    message: str
    stage: str
    details: dict | None = None  # numbers a script can act on (an error's `details`), in the JSON document only


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) folded into single spaces."""
    return " ".join(str(text).split())


def _click_exceptions():
    try:
        from typer import _click  # typer >= 0.24 vendors click
    except ImportError:
        import click as _click  # older typers depend on the click package
    return _click.exceptions


def describe(exc: BaseException, command: str = "darp-onnx") -> Failure:
    """What the user is told for `exc`: its exit code, one line and the stage it came from."""
    click_exc = _click_exceptions()
    if isinstance(exc, DarpError):
        default = "validation" if isinstance(exc, ValidationFailedError) else "input"
        message = getattr(exc, "cli_message", None) or str(exc)  # a parameter error, spelled as the CLI flag
        return Failure(exc.exit_code, one_line(message) or type(exc).__name__, getattr(exc, "stage", None) or default,
                       getattr(exc, "details", None))
    if isinstance(exc, click_exc.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else command
        return Failure(EXIT_BAD_INPUT, one_line(f"{where}: {exc.format_message()} (see {where} --help)"), "usage")
    if isinstance(exc, click_exc.ClickException):
        return Failure(EXIT_BAD_INPUT, one_line(exc.format_message()), "usage")
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        return Failure(EXIT_INTERRUPTED, "interrupted; nothing was written", "interrupted")
    if isinstance(exc, MemoryError):
        return Failure(EXIT_BAD_INPUT, "out of memory; use a smaller --batch-size, --input-shape or data set", "run")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EPERM):
        where = f"{exc.filename}: " if exc.filename else ""
        return Failure(EXIT_BAD_INPUT, one_line(f"{where}{exc.strerror}; free space or choose another path"), "write")
    detail = one_line(str(exc)) or "no message"
    return Failure(EXIT_BAD_INPUT, f"internal error ({type(exc).__name__}: {detail}); rerun with {DEBUG_FLAG} for the "
                                   "traceback and please report it", "internal")


def emit(failure: Failure, *, json_out: bool) -> None:
    """The one line on stderr, and the JSON document on stdout when asked for."""
    from darp_onnx.cli.output import console_err

    if json_out:
        document = {k: v for k, v in asdict(failure).items() if k != "details" or v is not None}
        sys.stdout.write(json.dumps({"error": document}) + "\n")
        sys.stdout.flush()
    console_err.print(f"[bold red]error:[/] {escape(failure.message)}", soft_wrap=True, highlight=False)


def split_debug(args: Sequence[str]) -> tuple[list[str], bool]:
    """`args` without `--debug` (before a `--` separator) and whether it was there."""
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != DEBUG_FLAG] + args[end:]
    return kept, len(kept) != len(args)


def wants_json(args: Sequence[str], exc: BaseException) -> bool:
    tagged = getattr(exc, JSON_ATTRIBUTE, None)
    if tagged is not None:
        return bool(tagged)
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    return JSON_FLAG in args[:end]


def is_expected(exc: BaseException) -> bool:
    """Errors we meant to raise (their one line is the whole story, even under --debug)."""
    click_exc = _click_exceptions()
    return isinstance(exc, (click_exc.ClickException, KeyboardInterrupt, typer.Abort))


def is_help_request(exc: BaseException) -> bool:
    return isinstance(exc, _click_exceptions().NoArgsIsHelpError)
