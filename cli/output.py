"""Where output goes: a report command's report (the tables of `inspect` and `diff`, or with --json one JSON
document) to stdout, so it pipes and redirects; progress, notes, warnings and errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from darp_onnx.cli.errors import JSON_ATTRIBUTE
from darp_onnx.errors import DarpError, OptionError

console_err = Console(stderr=True, highlight=False)
console_out = Console(highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def print_json(document: Any) -> None:
    """One JSON document on stdout, for pipelines."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def flag_namer(renames: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """Library parameter -> CLI flag: `renames` where they differ, else `--` and dashes (`--target-flops`)."""
    table = dict(renames or {})
    return lambda name: table.get(name, "--" + name.replace("_", "-"))


def error_exit(exc: DarpError, flags: Mapping[str, str] | None = None) -> typer.Exit:
    """Print `exc` as the one error line (a parameter error names the flag) and return the Exit to raise."""
    from darp_onnx.cli.errors import describe, emit

    name_flags(exc, flags)
    failure = describe(exc)
    emit(failure, json_out=bool(getattr(exc, JSON_ATTRIBUTE, False)))
    return typer.Exit(code=failure.code)


def name_flags(exc: BaseException, flags: Mapping[str, str] | None = None) -> None:
    """A parameter error gets its CLI message (`--target-flops` where Python callers read `target_flops`)."""
    if isinstance(exc, OptionError):
        exc.cli_message = exc.message_for(flag_namer(flags))


def handle_errors(fn: F | None = None, *, flags: Mapping[str, str] | None = None) -> Any:
    """Tag any exception with the command's --json choice and, for a parameter error, the message naming
    this command's flag (`flags` maps library parameters to flags where the names differ: `search_steps`
    -> `--steps`); `cli.app.DarpGroup` turns it into one line on stderr (a JSON error document with --json)
    and its exit code."""

    def decorate(command: F) -> F:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except Exception as exc:
                name_flags(exc, flags)
                try:
                    if not hasattr(exc, JSON_ATTRIBUTE):  # a command may have printed its own document
                        setattr(exc, JSON_ATTRIBUTE, bool(kwargs.get("json_out")))
                except AttributeError:  # an exception type that takes no attributes: --json is read from argv
                    pass
                raise

        return wrapper  # type: ignore[return-value]

    return decorate if fn is None else decorate(fn)
