"""Imports run one way: the graph analysis needs neither torch nor the proxy, and the proxy's export
does not import the proxy model that imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "darp_onnx"


def test_graph_analysis_imports_no_torch_and_no_proxy():
    code = ("import sys, darp_onnx.groups, darp_onnx.load.attributes, darp_onnx.load.constants; "
            "print(sorted(m for m in ('torch', 'darp_onnx.proxy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_proxy_export_does_not_import_the_proxy_model():
    assert "darp_onnx.proxy.model" not in _imports(PACKAGE / "proxy" / "export.py")


def test_node_attributes_are_read_in_one_module():
    readers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if "get_attribute_value" in p.read_text(encoding="utf-8"))
    assert readers == ["load/attributes.py", "report/diff.py"]  # diff renders values for display only
