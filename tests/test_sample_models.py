"""Every bundled sample model: the proxy equals onnxruntime, trains, and round-trips its weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.training.dataset import load_dataset
from darp_onnx.validation.checks import run_model
from tests.onnx_case import ATOL, RTOL

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MANIFEST = json.loads((SAMPLES / "manifest.json").read_text())
MODELS = sorted(MANIFEST["models"])


def _inputs(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module", params=MODELS)
def sample(request):
    model = load_model(SAMPLES / MANIFEST["models"][request.param]["file"])
    return request.param, model


def test_manifest_matches_the_files(sample):
    name, _ = sample
    entry = MANIFEST["models"][name]
    data = (SAMPLES / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("batch", [1, 6])
def test_proxy_equals_onnxruntime(sample, batch):
    _, model = sample
    x = _inputs(batch, seed=batch)
    (expected,), _, _ = run_model(model, {"input": x})
    with torch.no_grad():
        actual = build_proxy(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def test_test_accuracy_is_as_recorded_and_high(sample):
    name, model = sample
    test = load_dataset(SAMPLES / "data" / "digits_source.npz", model, split="test")
    (logits,), _, _ = run_model(model, test.inputs)
    accuracy = float((logits.argmax(1) == test.labels).mean())
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(MANIFEST["models"][name]["onnx_test_accuracy"], abs=1e-4)


def test_gradients_reach_every_weight(sample):
    _, model = sample
    proxy = build_proxy(model)
    proxy(torch.from_numpy(_inputs(4, seed=0))).square().mean().backward()
    missing = [k for k, p in proxy.weights.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for p in proxy.parameters())


def test_round_trip_of_changed_weights(sample):
    _, model = sample
    proxy = build_proxy(model)
    with torch.no_grad():
        for p in proxy.parameters():
            p.mul_(1.1).add_(0.01)
    written = proxy.to_onnx()
    x = _inputs(3, seed=4)
    (actual,), _, _ = run_model(written, {"input": x})
    with torch.no_grad():
        expected = proxy(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    (original,), _, _ = run_model(model, {"input": x})
    assert not np.allclose(actual, original, atol=1e-3)
