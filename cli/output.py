"""Where output goes: data (JSON) to stdout, diagnostics, progress and tables (rich) to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from darp_onnx.errors import DarpError, OptionError

console_err = Console(stderr=True, highlight=False)

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
    """Print the one-line message (a parameter error names the flag) and return the exit to raise."""
    message = exc.message_for(flag_namer(flags)) if isinstance(exc, OptionError) else str(exc)
    console_err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, highlight=False)
    return typer.Exit(code=exc.exit_code)


def handle_errors(fn: F | None = None, *, flags: Mapping[str, str] | None = None) -> Any:
    """Turn the domain exception into a one-line message on stderr and its exit code. `flags` maps
    library parameters to this command's flags where the names differ (`search_steps` -> `--steps`)."""

    def decorate(command: F) -> F:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except DarpError as exc:
                raise error_exit(exc, flags) from None

        return wrapper  # type: ignore[return-value]

    return decorate if fn is None else decorate(fn)
