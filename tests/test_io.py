"""Loading and saving: every bad input gets a one-line error naming the file and an exit code of 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.errors import BadInputError
from darp_onnx.load import io
from tests.onnx_case import IR_VERSION

runner = CliRunner()


def _mul_model(opset: int = 17, weight_size: int = 4) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(weight_size, dtype=np.float32), "w")
    node = helper.make_node("Mul", ["x", "w"], ["y"], name="mul")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", weight_size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight_size])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def _write(path: Path, model: onnx.ModelProto) -> Path:
    onnx.save_model(model, str(path))
    return path


def _check_cli(path: Path):
    return runner.invoke(app, ["check", str(path)])


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    message = result.output.strip()
    assert message.startswith("error:"), message
    assert len(message.splitlines()) == 1, message
    flat = " ".join(message.split())
    for fragment in fragments:
        assert fragment in flat, flat


def test_load_good_model(tmp_path):
    path = _write(tmp_path / "m.onnx", _mul_model())
    model = io.load_model(path)
    assert [n.op_type for n in model.graph.node] == ["Mul"]


def test_missing_file(tmp_path):
    _assert_one_line_error(_check_cli(tmp_path / "nope.onnx"), "nope.onnx", "no such file")


def test_folder_instead_of_file(tmp_path):
    _assert_one_line_error(_check_cli(tmp_path), "is a folder")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    _assert_one_line_error(_check_cli(path), "notes.onnx", "not", "ONNX")


def test_truncated_file(tmp_path):
    data = _mul_model(weight_size=256).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_check_cli(path), "cut.onnx", "truncated")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    _assert_one_line_error(_check_cli(path), "empty.onnx")


def test_opset_too_old(tmp_path):
    path = _write(tmp_path / "old.onnx", _mul_model(opset=6))
    _assert_one_line_error(_check_cli(path), "old.onnx", "opset 6", "version_converter")


def test_opset_too_new(tmp_path):
    path = _write(tmp_path / "new.onnx", _mul_model(opset=io.max_known_opset() + 5))
    _assert_one_line_error(_check_cli(path), "new.onnx", f"opset {io.max_known_opset() + 5}", "upgrade onnx")


def test_no_inputs(tmp_path):
    const = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(2, np.float32)))
    graph = helper.make_graph([const], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    path = _write(tmp_path / "noin.onnx", model)
    _assert_one_line_error(_check_cli(path), "noin.onnx", "no inputs")


def test_external_data_is_loaded(tmp_path):
    model = _mul_model(weight_size=1024)
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)
    loaded = io.load_model(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.arange(1024))


def test_external_data_outside_folder_is_refused(tmp_path):
    inner = tmp_path / "models"
    inner.mkdir()
    model = _mul_model(weight_size=1024)
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="secret.bin", size_threshold=0)
    proto = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    onnx.save_model(proto, str(inner / "m.onnx"))
    with pytest.raises(BadInputError, match="outside the model's folder"):
        io.load_model(inner / "m.onnx")


def test_external_data_missing(tmp_path):
    model = _mul_model(weight_size=1024)
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(BadInputError, match="is missing"):
        io.load_model(tmp_path / "m.onnx")


def test_load_does_not_touch_input(tmp_path):
    path = _write(tmp_path / "m.onnx", _mul_model())
    before = path.read_bytes()
    io.load_model(path)
    assert path.read_bytes() == before


def test_save_refuses_overwrite_without_force(tmp_path):
    target = _write(tmp_path / "out.onnx", _mul_model())
    with pytest.raises(BadInputError, match="already exists; pass --force"):
        io.save_model(_mul_model(weight_size=8), target)
    io.save_model(_mul_model(weight_size=8), target, force=True)
    assert io.load_model(target).graph.initializer[0].dims == [8]


def test_save_never_overwrites_input(tmp_path):
    source = _write(tmp_path / "in.onnx", _mul_model())
    with pytest.raises(BadInputError, match="never overwrites its input"):
        io.save_model(_mul_model(weight_size=8), source, force=True, protect=(source,))


def test_save_leaves_no_temporary_files(tmp_path):
    io.save_model(_mul_model(), tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
    target = _write(tmp_path / "out.onnx", _mul_model())
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.onnx, "save_model", boom)
    with pytest.raises(OSError):
        io.save_model(_mul_model(weight_size=8), target, force=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]


def test_save_large_model_uses_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD_BYTES", 1000)
    model = _mul_model(weight_size=4096)
    path = io.save_model(model, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    loaded = io.load_model(path)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.arange(4096))


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        io.save_model(_mul_model(), tmp_path / "no" / "out.onnx")


def test_the_input_shape_example_has_the_inputs_own_rank():
    """A [1, 2, seq_len] token input was told to give --input-shape input=1x3x224x224."""
    from onnx import TensorProto, helper

    from darp_onnx.errors import BadInputError
    from darp_onnx.load.inputs import input_shape

    tokens = helper.make_tensor_value_info("input", TensorProto.INT64, [1, 2, "seq_len"])
    with pytest.raises(BadInputError, match=r"--input-shape input=1x2x64 \(your sizes\)"):
        input_shape(tokens, batch=1)
    picture = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    with pytest.raises(BadInputError, match=r"--input-shape x=1x3x224x224 \(your sizes\)"):
        input_shape(picture, batch=1)
    channels_last = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["n", "h", "w", 3])  # keras2onnx
    with pytest.raises(BadInputError, match=r"--input-shape input_1=1x224x224x3 \(your sizes\)"):
        input_shape(channels_last, batch=1)


def test_an_output_declared_with_an_empty_shape_loads(tmp_path):
    """ocrspine's PP-OCRv5 models, their shape hints stripped for tract, declare `shape {}` (rank 0) on a
    [1, 2] Softmax output: refused as "breaks the ONNX spec" though onnxruntime runs them."""
    from darp_onnx.load.preflight import check_spec

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Softmax", ["h"], ["y"], name="sm", axis=-1)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [out], [w])
    path = tmp_path / "stripped.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION), path)
    model = io.load_model(path)
    check_spec(model, str(path))
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 2]
    assert not onnx.load(path).graph.output[0].type.tensor_type.shape.dim  # the file as it was


def test_an_output_inference_cannot_shape_gets_onnxruntimes_shape():
    """PP-OCRv5's recogniser: its empty output shape cleared, onnx's inference could not give it back (a
    Reshape to sizes computed at run time) and onnx.checker refuses a graph output with no shape; onnxruntime
    infers [d0, ?, 18385] and that declaration passes the checker (a graph no inference was run on here)."""
    from darp_onnx.load.output_shapes import shapeless_outputs, with_onnxruntime_output_shapes
    from darp_onnx.load.preflight import PreflightError, check_spec

    nodes = [helper.make_node("Reshape", ["x", "sizes"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["y"], name="sm", axis=-1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6]),
              helper.make_tensor_value_info("sizes", TensorProto.INT64, [3])]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    assert shapeless_outputs(model) == ["y"]
    with pytest.raises(PreflightError, match="shape"):
        check_spec(model, "stripped.onnx")
    declared = with_onnxruntime_output_shapes(model)
    check_spec(declared, "stripped.onnx")
    assert len(declared.graph.output[0].type.tensor_type.shape.dim) == 3
    assert shapeless_outputs(model) == ["y"]  # the given model as it was


def test_an_ir3_model_whose_initializers_are_not_inputs_loads(tmp_path):
    """OnnxMLTools wrote waifu2x's UpConv7 as IR 3 without its initializers among the inputs: onnxruntime runs it,
    onnx.checker refused it ('convolution_W in initializer but not in graph input'). It is read as IR 4."""
    from darp_onnx.load.preflight import check_spec

    model = _mul_model(opset=8)
    model.ir_version = 3
    path = tmp_path / "ir3.onnx"
    onnx.save(model, path)
    loaded = io.load_model(path)
    check_spec(loaded, str(path))
    assert loaded.ir_version == 4 and onnx.load(path).ir_version == 3


def test_a_model_without_onnx_operators_is_refused_as_such(tmp_path):
    """onnxruntime's logreg_iris sample (ai.onnx.ml only): 'opset 1 is older than 7; convert it' was wrong, and
    the conversion it advised fails."""
    node = helper.make_node("Normalizer", ["x"], ["y"], name="norm", domain="ai.onnx.ml", norm="L2")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)], ir_version=IR_VERSION)
    path = tmp_path / "ml_only.onnx"
    onnx.save(model, path)
    with pytest.raises(BadInputError, match="has no ONNX operators, only ai.onnx.ml .* nothing to prune"):
        io.load_model(path)
