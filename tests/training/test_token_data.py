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
