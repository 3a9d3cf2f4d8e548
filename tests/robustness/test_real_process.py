"""A few cases through a real `darp-onnx` process: the exit status, stderr and stdout a shell sees."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.robustness.models import MODELS

CLI = [sys.executable, "-c", "from darp_onnx.cli.app import main; main()"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("process")
    for name in ("model.onnx", "nan.onnx"):
        onnx.save(MODELS[name](), str(path / name))
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_missing_model_exits_1_with_one_line(folder):
    done = _run("prune", folder / "nothere.onnx")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {folder / 'nothere.onnx'}: no such file; check the path to the "
                                        "ONNX model (MODEL)"]


def test_usage_error_with_json_is_one_document_and_exit_1(folder):
    done = _run("prune", folder / "model.onnx", "--target-flops", "abc", "--json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["error"]["code"] == 1 and doc["error"]["stage"] == "usage"
    assert "--target-flops" in doc["error"]["message"] and len(done.stderr.splitlines()) == 1


def test_debug_shows_the_traceback(folder):
    plain = _run("check", folder / "nan.onnx")
    debug = _run("check", folder / "nan.onnx", "--debug")
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr and len(plain.stderr.splitlines()) == 1
    assert "Traceback" in debug.stderr and "PreflightError" in debug.stderr


def test_console_script_exits_1_on_a_usage_error():
    script = Path(sys.executable).parent / "darp-onnx"
    script = str(script) if script.exists() else shutil.which("darp-onnx")
    if script is None:
        pytest.skip("the darp-onnx console script is not installed next to this Python or on PATH")
    done = subprocess.run([script, "squash"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "No such command" in done.stderr and len(done.stderr.splitlines()) == 1
