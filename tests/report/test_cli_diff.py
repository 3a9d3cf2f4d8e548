"""`darp-onnx diff` through typer's CliRunner, and the `--input-shape` parser."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.errors import BadInputError
from darp_onnx.load.input_shapes import parse_input_shapes, resolve_input_shapes
from tests.report.cases import cnn

runner = CliRunner()


@pytest.fixture()
def models(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(cnn(), str(a))
    onnx.save(cnn(5, drop_relu=True), str(b))
    return a, b


def test_json_output_parses_and_names_the_changes(models):
    a, b = models
    result = runner.invoke(app, ["diff", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "darp-onnx/diff" and doc["schema_version"] == 1
    assert [n["name"] for n in doc["removed"]] == ["relu1"]
    assert doc["summary"]["file_bytes"]["before"] == a.stat().st_size
    assert doc["models"] == {"before": str(a), "after": str(b)}


def test_table_goes_to_stdout_and_reports_are_written(models, tmp_path):
    a, b = models
    html, md = tmp_path / "out.html", tmp_path / "out.md"
    result = runner.invoke(app, ["diff", str(a), str(b), "--html", str(html), "--markdown", str(md)])
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stderr and "MACs" not in result.stderr
    assert "MACs" in result.stdout and "Removed nodes (1): relu1 (Relu)" in result.stdout
    assert '<svg id="channels-chart"' in html.read_text(encoding="utf-8")
    assert "| Metric | Before | After | Change |" in md.read_text(encoding="utf-8")


def test_same_model_twice(models):
    a, _ = models
    result = runner.invoke(app, ["diff", str(a), str(a)])
    assert result.exit_code == 0 and "No structural change" in result.stdout


def test_input_shape_bare_and_named(models):
    a, b = models
    for flag in ("1x3x32x32", "x=1x3x32x32"):
        result = runner.invoke(app, ["diff", str(a), str(b), "--json", "--input-shape", flag])
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["input_shapes"] == {"x": [1, 3, 32, 32]}
        assert doc["summary"]["macs"]["before"] == 4 * 202752 + 80


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.onnx"], "no such file"),
        (["bad.onnx"], "not a readable ONNX model"),
        (["a.onnx", "--input-shape", "1x3xfoo"], "--input-shape '1x3xfoo'"),
        (["a.onnx", "--input-shape", "y=1x3x8x8"], "has no input 'y'"),
        (["a.onnx", "--html", "a.onnx"], "is one of the input models"),
    ],
)
def test_bad_input_exits_1_with_one_line(models, tmp_path, args, message):
    a, _ = models
    (tmp_path / "bad.onnx").write_bytes(b"\x00not onnx at all")
    argv = ["diff", str(a), *[str(tmp_path / v) if v.endswith(".onnx") else v for v in args]]
    result = runner.invoke(app, argv)
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.strip().count("\n") == 0
    assert result.stdout == ""


def test_parse_input_shapes():
    assert parse_input_shapes(["x=1x3x32x32", "mask = 1,16"]) == {"x": (1, 3, 32, 32), "mask": (1, 16)}
    assert parse_input_shapes(["1X3x8x8"]) == {"": (1, 3, 8, 8)}
    assert parse_input_shapes([]) == {} and parse_input_shapes(None) == {}
    assert parse_input_shapes(["a=b=1x2"]) == {"a=b": (1, 2)}
    for bad in ("x=", "=1x2", "1x0x3", "x=1xx2", "x=-1x3", "1.5x2"):
        with pytest.raises(BadInputError, match="--input-shape"):
            parse_input_shapes([bad])
    with pytest.raises(BadInputError, match="twice"):
        parse_input_shapes(["x=1x2", "x=1x3"])


def test_resolve_input_shapes():
    model = cnn()
    assert resolve_input_shapes(model, {"": (1, 3, 8, 8)}) == {"x": (1, 3, 8, 8)}
    assert resolve_input_shapes(model, {"x": (2, 3, 8, 8)}) == {"x": (2, 3, 8, 8)}
    with pytest.raises(BadInputError, match="has 4 dims, not 2"):
        resolve_input_shapes(model, {"x": (1, 3)})
    with pytest.raises(BadInputError, match="its inputs are 'x'"):
        resolve_input_shapes(model, {"z": (1, 3, 8, 8)})
    two = cnn()
    two.graph.input.append(onnx.helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, [1]))
    with pytest.raises(BadInputError, match="needs a model with one input"):
        resolve_input_shapes(two, {"": (1, 3, 8, 8)})


def test_models_with_free_sizes_are_counted_at_example_sizes_with_a_note(tmp_path):
    from tests.test_recorded_sizes import free_height_model

    path = tmp_path / "free.onnx"
    onnx.save(free_height_model(), str(path))
    result = runner.invoke(app, ["diff", str(path), str(path), "--json"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["summary"]["macs"]["before"] > 0 and not doc["warnings"]
    assert doc["input_shapes"] == {"x": [1, 3, 224, 224]} and doc["input_shapes_from"].startswith("example sizes")
    table = runner.invoke(app, ["diff", str(path), str(path)])
    assert "MACs counted at x=1x3x224x224: example sizes" in " ".join(table.output.split())
