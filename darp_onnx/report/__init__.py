"""What pruning changed: a graph diff of two ONNX models and its JSON, Markdown and HTML reports."""

from darp_onnx.report.diff import diff_models
from darp_onnx.report.html import to_html
from darp_onnx.report.json_report import SCHEMA, SCHEMA_VERSION, diff_to_dict, to_json
from darp_onnx.report.markdown import to_markdown
from darp_onnx.report.model import Change, GraphDiff
from darp_onnx.report.write import atomic_write_text, write_reports

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Change",
    "GraphDiff",
    "atomic_write_text",
    "diff_models",
    "diff_to_dict",
    "to_html",
    "to_json",
    "to_markdown",
    "write_reports",
]
