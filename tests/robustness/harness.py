"""Run the CLI in-process (typer's CliRunner through the app's own error path) and check how it failed."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from darp_onnx.cli.app import app

PREFLIGHT_SECONDS = 5.0  # a path or number mistake is reported within this (the bound)
runner = CliRunner()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    exception: BaseException | None


def invoke(args: list[str]) -> Outcome:
    start = time.perf_counter()
    result = runner.invoke(app, [str(a) for a in args], terminal_width=200)
    seconds = time.perf_counter() - start
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, seconds, exception)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (hidden ones included), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink() and p.exists()}


def assert_failed_cleanly(outcome: Outcome, *, code: int, message: str, before: dict[str, str],
                          after: dict[str, str]) -> None:
    """Exit `code`, exactly one line on stderr holding `message`, no traceback, no internal error,
    every input byte-identical and no file added."""
    assert outcome.exception is None, f"exception escaped: {outcome.exception!r}"
    assert outcome.code == code, (outcome.code, outcome.stderr)
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and outcome.stderr.endswith("\n"), outcome.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert "internal error" not in lines[0], lines[0]
    assert message in lines[0], (message, lines[0])
    assert after == before, "files changed or left behind"
