"""With enough real samples, the reported fidelity is measured on samples kept out of search and fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.training.dataset import SYNTHETIC_SOURCE, Dataset
from darp_onnx.training.holdout import MIN_HELD_OUT, MIN_SAMPLES_FOR_HOLDOUT, split_holdout

ROOT = Path(__file__).resolve().parents[2]
RESNET = ROOT / "sample_models" / "resnet.onnx"
DIGITS = ROOT / "sample_models" / "data" / "digits_source.npz"


def _data(n: int, source: str = "data.npz") -> Dataset:
    return Dataset({"x": np.arange(n, dtype=np.float32)[:, None]}, np.arange(n) % 3, source)


def test_a_share_is_held_out_disjoint_from_training():
    training, held = split_holdout(_data(100), 0.2, seed=0)
    assert held is not None and len(held) == 20 and len(training) == 80
    assert not set(held.inputs["x"][:, 0]) & set(training.inputs["x"][:, 0])
    assert split_holdout(_data(100), 0.2, seed=0)[1].inputs["x"].tolist() == held.inputs["x"].tolist()  # seeded


def test_small_synthetic_or_zero_share_hold_nothing_out():
    assert split_holdout(_data(MIN_SAMPLES_FOR_HOLDOUT - 1), 0.2, 0)[1] is None
    assert split_holdout(_data(100), 0.0, 0)[1] is None
    assert split_holdout(_data(100, source=SYNTHETIC_SOURCE), 0.2, 0)[1] is None
    assert len(split_holdout(_data(MIN_SAMPLES_FOR_HOLDOUT), 0.01, 0)[1]) == MIN_HELD_OUT


def _prune(tmp_path, *args):
    return CliRunner().invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "p.onnx"), "--force", "-q", "--json",
                                    "--data", str(DIGITS), "--max-samples", "60", "--steps", "4",
                                    "--finetune-steps", "2", "--batch-size", "8", *args])


def test_prune_reports_fidelity_on_the_held_out_samples(tmp_path):
    result = _prune(tmp_path)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["validation"]["fidelity_on"] == "12 held-out samples" and doc["data"]["samples"] == 48
    result = _prune(tmp_path, "--holdout", "0")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["validation"]["fidelity_on"] == "60 fitted (no holdout) samples"


def test_data_free_fidelity_is_measured_on_fresh_synthetic_samples(tmp_path):
    """Measured on the samples it was fitted to (and its BatchNorm re-estimated on), a data-free model looked
    closer than on any other input: an orientation classifier constant on fresh samples was written."""
    result = CliRunner().invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "p.onnx"), "--force", "-q",
                                      "--json", "--max-samples", "24", "--steps", "4", "--finetune-steps", "2",
                                      "--batch-size", "8", "--max-drift", "off"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["validation"]["fidelity_on"] == "12 fresh synthetic samples (not fitted)"
    assert doc["data"]["samples"] == 24
