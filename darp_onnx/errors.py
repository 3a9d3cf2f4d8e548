"""One domain exception type, caught at the CLI boundary and turned into an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_VALIDATION = 2


class DarpError(Exception):
    """An error the user can act on; its message is one line naming the file, node or option."""

    exit_code: int = EXIT_BAD_INPUT


class BadInputError(DarpError):
    """The input model, data or an option is unusable (exit code 1)."""


class UnsupportedOpError(BadInputError):
    """A node uses an op (or op version) the proxy has no converter for."""


class ValidationFailedError(DarpError):
    """A written or rewritten model failed a check (exit code 2); nothing is written."""

    exit_code = EXIT_VALIDATION


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
