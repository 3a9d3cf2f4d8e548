"""The JSON, Markdown and HTML renderings of a diff, and writing them atomically."""

from __future__ import annotations

import json
import re

import pytest

from darp_onnx.report import (
    SCHEMA,
    SCHEMA_VERSION,
    diff_models,
    diff_to_dict,
    to_html,
    to_json,
    to_markdown,
    write_reports,
)
from darp_onnx.report.model import NodeRef
from tests.report.cases import cnn, depthwise


@pytest.fixture(scope="module")
def pruned_diff():
    diff = diff_models(cnn(), cnn(5, drop_relu=True), labels=("a.onnx", "b.onnx"))
    diff.latency_ms_before, diff.latency_ms_after = 2.0, 1.5
    diff.fidelity = {"top1_agreement": 0.995, "accuracy": {"before": 0.9, "after": 0.88}, "bad": float("nan")}
    diff.provider, diff.method, diff.budget = "CPUExecutionProvider", "darp", {"macs": 0.5}
    return diff


def test_json_has_the_schema_fields_and_the_numbers(pruned_diff):
    doc = json.loads(to_json(pruned_diff))
    assert list(doc)[:2] == ["schema", "schema_version"]
    assert (doc["schema"], doc["schema_version"]) == (SCHEMA, SCHEMA_VERSION) == ("darp-onnx/diff", 1)
    assert doc["summary"]["macs"] == {"before": 202832, "after": 126800, "delta": -76032,
                                      "percent": round(100 * -76032 / 202832, 3)}
    assert doc["summary"]["latency_ms"]["percent"] == -25.0
    assert doc["removed"] == [{"name": "relu1", "op_type": "Relu", "index": 1}]
    assert [r["name"] for r in doc["resized"]] == ["conv1", "conv2"]
    assert doc["resized"][0]["weights"][0]["shape_after"] == [5, 3, 3, 3]
    assert doc["layers"][0]["channels_after"] == 5
    assert doc["fidelity"]["bad"] is None  # NaN is not JSON
    assert doc["budget"] == {"macs": 0.5} and doc["method"] == "darp"
    assert doc == diff_to_dict(pruned_diff)


def test_markdown_has_the_summary_table_then_layers_then_removed_nodes(pruned_diff):
    md = to_markdown(pruned_diff)
    assert "| Metric | Before | After | Change |" in md
    assert "| MACs | 202.83K | 126.80K | -37.5 % |" in md
    assert "| Parameters | 898 | 598 | -33.4 % |" in md
    assert "| Nodes | 7 | 6 | -14.3 % |" in md
    assert "| Latency | 2 ms | 1.5 ms | -25.0 % |" in md
    assert "| Fidelity: top1_agreement | — | 0.995 | — |" in md
    assert "| Fidelity: accuracy | 0.9 | 0.88 | -2.2 % |" in md
    assert "| `conv1` | Conv | 5/8 (62 %) |" in md
    assert "- `relu1` (Relu)" in md
    assert md.index("| Metric") < md.index("Resized layers") < md.index("Removed nodes")
    assert "<details>" not in md


def test_markdown_folds_long_lists_and_escapes_table_cells():
    diff = diff_models(cnn(), cnn())
    diff.removed = [NodeRef(f"n|{k}<b>", "Relu", k) for k in range(30)]
    md = to_markdown(diff)
    assert "<details>" in md and "<summary><b>Removed nodes (30)</b></summary>" in md
    assert "`n\\|3<b>`" in md


def test_markdown_of_an_unchanged_model_says_so():
    md = to_markdown(diff_models(cnn(), cnn()))
    assert "No structural change" in md and "| MACs | 202.83K | 202.83K | 0 % |" in md


def test_html_is_self_contained_with_the_channels_chart(pruned_diff):
    page = to_html(pruned_diff)
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script|<link|@import|url\(|src=", page, re.IGNORECASE)
    assert '<svg id="channels-chart"' in page
    assert page.count('class="bar kept"') == 3 and page.count('class="bar removed"') == 1
    assert "<title>conv1: 5 of 8 output channels kept</title>" in page
    assert "<title>conv1: 3 of 8 output channels removed</title>" in page
    for text in ("relu1", "202.83K", "126.80K", "898", "598", "2 ms", "1.5 ms", "top1_agreement", "0.995"):
        assert text in page


def test_html_escapes_model_text():
    diff = diff_models(cnn(), cnn(5))
    diff.layers[0].name = "<script>alert(1)</script>"
    diff.removed = [NodeRef("<img src=x>", "Relu", 0)]
    page = to_html(diff)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_html_attribute_changes_and_empty_chart():
    page = to_html(diff_models(depthwise(8), depthwise(5)))
    assert "group" in page and 'id="attributes"' in page
    diff = diff_models(cnn(), cnn())
    diff.layers = []
    assert 'id="channels-chart-empty"' in to_html(diff)


def test_write_reports_writes_three_files_atomically(tmp_path, pruned_diff):
    out = tmp_path / "reports"
    paths = write_reports(pruned_diff, out)
    assert set(paths) == {"json", "markdown", "html"}
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    assert json.loads(paths["json"].read_text())["schema"] == "darp-onnx/diff"
    assert paths["markdown"].read_text() == to_markdown(pruned_diff)
    assert paths["html"].read_text(encoding="utf-8") == to_html(pruned_diff)
    write_reports(pruned_diff, out)  # overwriting is fine
    # no temp files left behind
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
