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


# Lowest test accuracy each task's samples must reach (chance: 0.2 for digits, 0.5 for sentiment).
ACCURACY_FLOORS = {"data/digits_source.npz": 0.95, "data/sentiment.npz": 0.65}
VOCAB, SEQ = 3000, 48


def _inputs(name: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random images, or random token ids ([CLS] = 2 first) with a padded tail for the text samples."""
    rng = np.random.default_rng(seed)
    if "inputs" not in MANIFEST["models"][name]:
        return {"input": rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)}
    lengths = rng.integers(2, SEQ + 1, batch)
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(3, VOCAB, (batch, SEQ)) * mask
    ids[:, 0] = 2
    return {"input_ids": ids, "attention_mask": mask}


def _proxy_outputs(proxy, feeds: dict[str, np.ndarray]) -> torch.Tensor:
    return proxy(**{k: torch.from_numpy(v) for k, v in feeds.items()})


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
    name, model = sample
    x = _inputs(name, batch, seed=batch)
    (expected,), _, _ = run_model(model, x)
    with torch.no_grad():
        actual = _proxy_outputs(build_proxy(model), x).numpy()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def test_test_accuracy_is_as_recorded_and_high(sample):
    name, model = sample
    data = MANIFEST["models"][name]["data"]
    test = load_dataset(SAMPLES / data, model, split="test")
    (logits,), _, _ = run_model(model, test.inputs)
    accuracy = float((logits.argmax(1) == test.labels).mean())
    assert accuracy >= ACCURACY_FLOORS[data]
    assert accuracy == pytest.approx(MANIFEST["models"][name]["onnx_test_accuracy"], abs=1e-4)


def test_gradients_reach_every_weight(sample):
    name, model = sample
    proxy = build_proxy(model)
    _proxy_outputs(proxy, _inputs(name, 4, seed=0)).square().mean().backward()
    missing = [k for k, p in proxy.weights.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for p in proxy.parameters())


def test_round_trip_of_changed_weights(sample):
    name, model = sample
    proxy = build_proxy(model)
    with torch.no_grad():
        for p in proxy.parameters():
            p.mul_(1.1).add_(0.01)
    written = proxy.to_onnx()
    x = _inputs(name, 3, seed=4)
    (actual,), _, _ = run_model(written, x)
    with torch.no_grad():
        expected = _proxy_outputs(proxy, x).numpy()
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    (original,), _, _ = run_model(model, x)
    assert not np.allclose(actual, original, atol=1e-3)


def test_both_exporters_of_the_text_encoder_agree():
    """textenc.onnx (dynamo) and textenc_ts.onnx (TorchScript) hold the same weights: same logits, any length."""
    files = {name: load_model(SAMPLES / MANIFEST["models"][name]["file"]) for name in ("textenc", "textenc_ts")}
    assert {e["exporter"].split(")")[0] for n, e in MANIFEST["models"].items() if n in files} == {
        "torch.onnx.export(dynamo=True", "torch.onnx.export(dynamo=False"}
    for seq in (7, 48):
        x = {k: v[:, :seq] for k, v in _inputs("textenc", 5, seed=seq).items()}
        (dynamo,), _, _ = run_model(files["textenc"], x)
        (torchscript,), _, _ = run_model(files["textenc_ts"], x)
        np.testing.assert_allclose(dynamo, torchscript, rtol=RTOL, atol=ATOL)
