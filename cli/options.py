"""Options every command shares: -q/--quiet, -v/--verbose and --json, and what they print."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from darp_onnx.cli.output import console_err, console_out
from darp_onnx.errors import BadInputError

Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors (no progress, "
                                                            "tables or summary).")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Print more detail (tables, timings).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (diagnostics go to "
                                                      "stderr).")]

AllowNonfinite = Annotated[bool, typer.Option("--allow-nonfinite", help="Go on when weights hold NaN or Inf "
                                                                         "(refused by default, naming the tensor).")]


class Verbosity:
    """What a command prints: `info` on stderr unless quiet, `detail` only when verbose, `report` on stdout."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False) -> None:
        if quiet and verbose:
            raise BadInputError("-q/--quiet and -v/--verbose exclude each other; give one of them")
        self.quiet, self.verbose = quiet, verbose
        self._start = time.perf_counter()

    def info(self, *objects: Any, **kwargs: Any) -> None:
        if not self.quiet:
            console_err.print(*objects, **kwargs)

    def report(self, *objects: Any, **kwargs: Any) -> None:
        """What the command is for (inspect's tables): on stdout, unless quiet."""
        if not self.quiet:
            console_out.print(*objects, **kwargs)

    def detail(self, *objects: Any, **kwargs: Any) -> None:
        if self.verbose:
            console_err.print(*objects, **kwargs)

    def elapsed(self, what: str = "done") -> None:
        """With --verbose, how long the command has run."""
        self.detail(f"{what} in {time.perf_counter() - self._start:.2f} s")
