"""The recovery after a search re-inserts BatchNorm at the scale the search's layers learned, not at the
statistics of the unpruned proxy the search trained (whose switched-off channels drift: ddddocr's CRNN
overflowed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import darp_onnx.workflows.prune as workflow
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.training.batchnorm import insert_batchnorm
from darp_onnx.training.dataset import load_dataset
from darp_onnx.training.steps import predict

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"


@pytest.fixture(scope="module")
def resnet_data():
    model = load_model(SAMPLES / "resnet.onnx")
    return model, load_dataset(DATA, model, split="train").subset(np.arange(32))


@torch.no_grad()
def test_the_recovery_starts_from_what_the_search_layers_learned(resnet_data):
    model, data = resnet_data
    proxy = build_proxy(model).eval()
    searched = insert_batchnorm(proxy, data, samples=32)
    for layer in searched.layers.values():  # what the search's training left in the layers
        layer.weight.mul_(2.0)
        layer.bias.add_(1.0)
    learned = {idx: (layer.weight.clone(), layer.bias.clone()) for idx, layer in searched.layers.items()}
    statistics = searched.learned_statistics()
    searched.fold()
    first = min(statistics)
    proxy.tensor(proxy.steps[first].inputs[1]).mul_(1e3)  # an unpruned proxy far from what the layers learned
    handle = insert_batchnorm(proxy, data, samples=32, statistics=statistics)
    for idx, (weight, bias) in learned.items():
        torch.testing.assert_close(handle.layers[idx].weight, weight)
        torch.testing.assert_close(handle.layers[idx].bias, bias)
        torch.testing.assert_close(handle.layers[idx].running_mean, bias)
    assert all(layer.is_identity() for layer in handle.layers.values())


@torch.no_grad()
def test_given_statistics_leave_the_function_unchanged(resnet_data):
    model, data = resnet_data
    reference = build_proxy(model).eval()
    statistics = insert_batchnorm(reference, data, samples=32).learned_statistics()
    proxy = build_proxy(model).eval()
    before = predict(proxy, data)[0]
    insert_batchnorm(proxy, data, statistics=statistics)
    np.testing.assert_allclose(predict(proxy, data)[0], before, atol=2e-4, rtol=1e-4)


def test_the_search_hands_its_statistics_to_the_recovery(resnet_data, monkeypatch):
    model, data = resnet_data
    seen = {}
    original = workflow.recover_weights

    def spy(*args, **kwargs):
        seen["statistics"] = kwargs.get("statistics")
        return original(*args, **kwargs)

    monkeypatch.setattr(workflow, "recover_weights", spy)
    workflow.prune(model, data=data, target_flops=0.5, search_steps=4, finetune_steps=2, batch_size=8, write=False,
                   time_budget="off", latency_runs=1)
    assert seen["statistics"] and all(var.min() >= 0 for _, var in seen["statistics"].values())
