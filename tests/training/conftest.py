"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darp_onnx.load.io import load_model
from darp_onnx.training.dataset import load_dataset

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"


@pytest.fixture(scope="module")
def resnet_data():
    """The sample ResNet and 16 samples of its digits data."""
    model = load_model(SAMPLES / "resnet.onnx")
    return model, load_dataset(SAMPLES / "data" / "digits_source.npz", model, split="train").subset(np.arange(16))
