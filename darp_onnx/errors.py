"""One domain exception type, caught at the CLI boundary and turned into an exit code."""

from __future__ import annotations

import re
from collections.abc import Callable

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_VALIDATION = 2


class DarpError(Exception):
    """An error the user can act on; its message is one line naming the file, node or option."""

    exit_code: int = EXIT_BAD_INPUT


class BadInputError(DarpError):
    """The input model, data or an option is unusable (exit code 1)."""


class MissingInputShapeError(BadInputError):
    """An input has a free size after its batch axis and no --input-shape or data gives it."""


class PreflightError(BadInputError):
    """A path, an option value or the model is unusable, found before any work (exit code 1)."""

    stage = "preflight"


class UnsupportedOpError(BadInputError):
    """A node uses an op (or op version) the proxy has no converter for."""


class ValidationFailedError(DarpError):
    """A written or rewritten model failed a check (exit code 2); nothing is written."""

    exit_code = EXIT_VALIDATION


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line errors, with the indented
    lines that continue it: onnxruntime writes "Got invalid dimensions for input: roles for the following
    indices" and then, indented on the next line, " index: 0 Got: 64 Expected: 1"."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    kept = [lines[0].rstrip()]
    for line in lines[1:]:
        if not line[:1].isspace() or not line.strip():
            break
        kept.append(line.strip())
    return " ".join(kept)


class OptionError(BadInputError):
    """A bad setting. The message names the parameter as the caller spelled it: `target_flops` for a
    Python caller; the CLI renders the same error with its flag (`--target-flops`) via `message_for`.

    `template` holds `{option}` where the parameter's name goes and may name other parameters as
    `{option:NAME}` (e.g. "give exactly one of {option:target_flops} or {option:target_params}")."""

    def __init__(self, parameter: str, template: str) -> None:
        self.parameter = parameter
        self.template = template
        super().__init__(self.message_for(None))

    def message_for(self, names: Callable[[str], str] | None) -> str:
        """The message with each parameter spelled by `names` (None: the Python parameter names)."""
        spell = names or (lambda name: name)
        text = self.template.replace("{option}", spell(self.parameter))
        return _NAMED.sub(lambda match: spell(match.group(1)), text)


_NAMED = re.compile(r"\{option:([A-Za-z_][A-Za-z0-9_]*)\}")
