"""Writing the reports: each file goes to a temporary name in its folder and is renamed into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from darp_onnx.errors import BadInputError
from darp_onnx.report.html import to_html
from darp_onnx.report.json_report import to_json
from darp_onnx.report.markdown import to_markdown
from darp_onnx.report.model import GraphDiff

REPORT_FILES = {"json": "report.json", "markdown": "report.md", "html": "report.html"}


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) so that readers see the old file or the new one, never part of one."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder; give a file path for the report")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BadInputError(f"{path}: folder {parent} does not exist; create it first")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_reports(diff: GraphDiff, directory: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `directory` (created if missing); returns
    {"json": path, "markdown": path, "html": path}."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"{directory}: is a file; give a folder for the reports")
    directory.mkdir(parents=True, exist_ok=True)
    texts = {"json": to_json(diff), "markdown": to_markdown(diff), "html": to_html(diff)}
    return {kind: atomic_write_text(directory / REPORT_FILES[kind], texts[kind]) for kind in REPORT_FILES}
