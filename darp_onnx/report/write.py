"""Writing the reports: each file goes to a temporary name in its folder and is renamed into place; a new
report folder is written whole under a temporary name and renamed (see `load.staging`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from darp_onnx.errors import BadInputError
from darp_onnx.load.staging import StagedWrites, new_file_mode
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
        os.chmod(tmp_name, new_file_mode())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_reports(diff: GraphDiff, directory: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md and report.html into `directory` (created if missing, its parent
    must exist), all three or none; returns {"json": path, "markdown": path, "html": path}."""
    with StagedWrites() as stage:
        paths = stage_reports(diff, directory, stage)
        stage.commit()
    return paths


def render_reports(diff: GraphDiff) -> dict[str, str]:
    """kind -> text of each report."""
    return {"json": to_json(diff), "markdown": to_markdown(diff), "html": to_html(diff)}


def stage_reports(diff: GraphDiff, directory: str | os.PathLike, stage: StagedWrites) -> dict[str, Path]:
    """Render the reports and write them under temporary names; `stage.commit()` puts them in place."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"{directory}: is a file; give a folder for the reports")
    if not directory.exists() and not directory.absolute().parent.is_dir():
        raise BadInputError(f"{directory}: folder {directory.absolute().parent} does not exist; create it first")
    texts = render_reports(diff)
    existing = directory.is_dir()
    target = stage.stage_in(directory)
    for kind, name in REPORT_FILES.items():
        temporary = stage.file(directory / name) if existing else target / name
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(texts[kind])
    return {kind: directory / name for kind, name in REPORT_FILES.items()}
