"""BatchNorm re-inserted for training batches of a few samples: it trains on its running statistics (a few
pictures' statistics follow each picture, which the written model never sees), and recalibration still
re-estimates them on the pruned model."""

from __future__ import annotations

import numpy as np
import torch

from darp_onnx.proxy import build_proxy
from darp_onnx.training.batchnorm import MIN_BATCH_STATISTICS, insert_batchnorm
from darp_onnx.training.steps import batch_outputs


@torch.no_grad()
def test_small_training_batches_train_on_the_running_statistics(resnet_data):
    model, data = resnet_data
    proxy = build_proxy(model)
    handle = insert_batchnorm(proxy, data, samples=16, training_batch=MIN_BATCH_STATISTICS - 4)
    assert handle.layers and not any(layer.batch_stats for layer in handle.layers.values())
    assert not handle.normalises_most()  # the weights then train as unnormalised ones (clipped SGD)
    proxy.eval()
    evaluated = batch_outputs(proxy, data, np.arange(4), "cpu")[0]
    proxy.train()
    trained = batch_outputs(proxy, data, np.arange(4), "cpu")[0]
    torch.testing.assert_close(trained, evaluated)  # what training sees is what the folded model computes


@torch.no_grad()
def test_batches_of_the_threshold_and_more_train_on_batch_statistics(resnet_data):
    model, data = resnet_data
    for batch in (None, MIN_BATCH_STATISTICS):
        handle = insert_batchnorm(build_proxy(model), data, samples=16, training_batch=batch)
        assert all(layer.batch_stats for layer in handle.layers.values()) and handle.normalises_most()


@torch.no_grad()
def test_recalibration_re_estimates_the_statistics_of_layers_trained_on_fixed_ones(resnet_data):
    """Adaptive BatchNorm after pruning must still happen: the same statistics as layers on batch statistics
    get, and the layers are left training on fixed ones."""
    model, data = resnet_data
    fixed_handle = insert_batchnorm(build_proxy(model), data, samples=16, training_batch=2)
    batch_handle = insert_batchnorm(build_proxy(model), data, samples=16)
    for handle in (fixed_handle, batch_handle):
        for layer in handle.layers.values():
            layer.running_mean.add_(3.0)
            layer.running_var.mul_(5.0)
        handle.recalibrate(data, samples=16, batch_size=16)
    for idx, expected in batch_handle.layers.items():
        actual = fixed_handle.layers[idx]
        torch.testing.assert_close(actual.running_mean, expected.running_mean)
        torch.testing.assert_close(actual.running_var, expected.running_var)
        assert not actual.batch_stats
