"""All-or-nothing writes: every output is written under a temporary name beside its destination, then
all are renamed into place together, or none is.

A command that writes a model and a report either leaves both or neither: a failure while writing (a
full disk, a bad report path, Ctrl-C) removes every temporary file. Files get the mode the user's umask
gives new files (as `open` would), not the 0600 of a temporary file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    return 0o777 & ~current_umask()


class StagedWrites:
    """Temporary files and folders beside their destinations; `commit()` renames them all into place.

    Use as a context: leaving it without a commit (an exception) deletes everything staged. A staged
    folder must not exist yet (an existing folder is filled file by file instead, see `stage_in`)."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []  # (temporary, final, is_folder)

    def file(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.absolute().parent)
        os.close(fd)
        self._staged.append((Path(name), final, False))
        return Path(name)

    def folder(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        name = tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.absolute().parent)
        self._staged.append((Path(name), final, True))
        return Path(name)

    def stage_in(self, folder: str | os.PathLike) -> Path:
        """Where files destined for `folder` go now: a staged new folder, or `folder` itself when it
        exists (then stage each file with `file`)."""
        folder = Path(folder)
        return folder if folder.is_dir() else self.folder(folder)

    def commit(self) -> None:
        file_mode, folder_mode = new_file_mode(), new_folder_mode()
        for temporary, _, is_folder in self._staged:
            os.chmod(temporary, folder_mode if is_folder else file_mode)
            if is_folder:
                for inner in temporary.rglob("*"):
                    os.chmod(inner, folder_mode if inner.is_dir() else file_mode)
        done: list[tuple[Path, bool]] = []
        try:
            for temporary, final, is_folder in self._staged:
                if is_folder:
                    os.rename(temporary, final)
                else:
                    os.replace(temporary, final)
                done.append((final, is_folder))
        except BaseException:
            for final, is_folder in done:  # new folders and files go; a file replaced under --force stays new
                if is_folder:
                    shutil.rmtree(final, ignore_errors=True)
            raise
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _, is_folder in self._staged:
            if is_folder:
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
