"""A model with a free input size and no --input-shape: `prune` says first when there is nothing to prune at all."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from darp_onnx.cli.app import app

runner = CliRunner()


def _front_end(tmp_path, reduce: str) -> str:
    """A convolution over a waveform of free length (an STFT written as a Conv), then `reduce` over its channels
    ('ReduceMax': nothing prunable) or a 1x1 convolution (its 8 channels prunable)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 1, 16)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal((2, 8, 1)).astype(np.float32), "w2")]
    last = (helper.make_node("ReduceMax", ["c"], ["y"], name="rmax", axes=[1], keepdims=1) if reduce == "ReduceMax"
            else helper.make_node("Conv", ["r", "w2"], ["y"], name="mix"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="stft", strides=[8]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"), last]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "samples"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    path = tmp_path / f"{reduce}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_nothing_to_prune_is_said_before_the_missing_input_size(tmp_path):
    model = _front_end(tmp_path, "ReduceMax")
    result = runner.invoke(app, ["prune", model, "--target-flops", "0.5", "-o", str(tmp_path / "out.onnx")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text
    assert "nothing in this model is prunable (at example sizes for its free dims) (1 frozen group" in text
    assert "ReduceMax 'rmax' reduces over the channel axis" in text and "--input-shape" not in text
    assert not (tmp_path / "out.onnx").exists()


def test_a_model_with_something_to_prune_is_still_asked_for_its_input_size(tmp_path):
    model = _front_end(tmp_path, "Conv")
    result = runner.invoke(app, ["prune", model, "--target-flops", "0.5", "-o", str(tmp_path / "out.onnx")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "give its shape with --input-shape x=1x1x" in text
    assert "nothing in this model is prunable" not in text
