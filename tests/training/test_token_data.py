"""Token-id data (int64 [N, S] arrays in an .npz) for a text model with a symbolic sequence axis."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.load.io import load_model
from darp_onnx.training.data_shapes import npz_shapes, shapes_from_data
from darp_onnx.training.dataset import load_dataset
from tests.training.digits_images import ROOT

TEXTENC = ROOT / "sample_models" / "textenc.onnx"
SENTIMENT = ROOT / "sample_models" / "data" / "sentiment.npz"
runner = CliRunner()


def test_npz_headers_give_the_array_shapes_without_loading():
    shapes = npz_shapes(SENTIMENT)
    with np.load(SENTIMENT) as arrays:
        assert shapes == {k: arrays[k].shape for k in arrays.files}


def test_sequence_length_comes_from_the_data(tmp_path):
    model = load_model(TEXTENC)
    assert shapes_from_data(SENTIMENT, model, {}) == {"input_ids": (1, 48), "attention_mask": (1, 48)}
    given = {"input_ids": (1, 16), "attention_mask": (1, 16)}
    assert shapes_from_data(SENTIMENT, model, given) == given  # --input-shape wins
    ids = np.ones((3, 20), dtype=np.int64)
    np.savez(tmp_path / "plain.npz", input_ids=ids, attention_mask=ids, labels=np.zeros(3, dtype=np.int64))
    assert shapes_from_data(tmp_path / "plain.npz", model, {})["input_ids"] == (1, 20)
    assert shapes_from_data(tmp_path / "nothing.npz", model, {}) == {}  # load_dataset reports it


def test_int64_token_arrays_load_with_labels():
    model = load_model(TEXTENC)
    data = load_dataset(SENTIMENT, model, split="train", max_samples=32)
    assert set(data.inputs) == {"input_ids", "attention_mask"} and len(data) == 32
    assert all(v.dtype == np.int64 and v.shape == (32, 48) for v in data.inputs.values())
    assert data.labels is not None and set(np.unique(data.labels)) <= {0, 1}


def test_prune_text_model_with_token_data_and_no_input_shape(tmp_path):
    out = tmp_path / "out.onnx"
    result = runner.invoke(app, ["prune", str(TEXTENC), "--data", str(SENTIMENT), "--max-samples", "64",
                                 "--steps", "2", "--finetune-steps", "2", "--batch-size", "8", "--time-budget", "off",
                                 "-o", str(out), "-q", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["data"]["samples"] == 64 - 13 and document["data"]["labels"] is True  # 20% held out
    assert document["validation"]["fidelity_on"] == "13 held-out samples"
    assert out.exists()


def _one_input_text_model():
    """An embedding over int64 ids [1, L] (attacut's input: a batch of one, a free length)."""
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((10, 4), np.float32), "table")
    node = helper.make_node("Gather", ["table", "chars"], ["embedded"], name="embed")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("chars", TensorProto.INT64, [1, "L"])],
                              [helper.make_tensor_value_info("embedded", TensorProto.FLOAT, [1, "L", 4])], [table])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_folder_of_npy_samples_gives_the_length_and_names_files_of_other_lengths(tmp_path):
    """attacut with a folder of per-sentence .npy id files: asked for --input-shape though the files said the
    length, then told 'all input arrays must have the same shape; give a valid .npz file'."""
    import pytest

    from darp_onnx.errors import BadInputError

    model = _one_input_text_model()
    folder = tmp_path / "ids"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"s{k}.npy", np.full((1, 64), k, dtype=np.int64))
    assert shapes_from_data(folder, model, {}) == {"chars": (1, 64)}
    assert load_dataset(folder, model).inputs["chars"].shape == (3, 1, 64)
    np.save(folder / "s3.npy", np.zeros((1, 57), dtype=np.int64))
    with pytest.raises(BadInputError, match=r"s0\.npy holds an array of shape \(1, 64\), s3\.npy one of \(1, 57\); "
                                            r".* pad or cut them to one length"):
        load_dataset(folder, model)
