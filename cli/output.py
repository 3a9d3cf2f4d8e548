"""Where output goes: data (JSON) to stdout, diagnostics, progress and tables (rich) to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from darp_onnx.errors import DarpError

console_err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def print_json(document: Any) -> None:
    """One JSON document on stdout, for pipelines."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def error_exit(exc: DarpError) -> typer.Exit:
    console_err.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
    return typer.Exit(code=exc.exit_code)


def handle_errors(fn: F) -> F:
    """Turn the domain exception into a one-line message on stderr and its exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DarpError as exc:
            raise error_exit(exc) from None

    return wrapper  # type: ignore[return-value]
