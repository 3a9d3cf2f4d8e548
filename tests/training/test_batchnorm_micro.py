"""BatchNorm re-inserted into a model that runs in micro-batches (one sample per run): statistics are
moments over all the samples, not one sample's over its own positions, and training keeps them fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.proxy import build_proxy
from darp_onnx.training.batchnorm import NormalisedConv, insert_batchnorm
from darp_onnx.training.steps import batch_outputs


def _perturbed(handle) -> None:
    """Statistics far from the data's (as after pruning): recalibration must replace them."""
    for layer in handle.layers.values():
        layer.running_mean.add_(3.0)
        layer.running_var.mul_(5.0)


@torch.no_grad()
def test_micro_batch_statistics_are_moments_over_all_samples(resnet_data):
    model, data = resnet_data
    whole, micro = build_proxy(model), build_proxy(model)
    batch_handle = insert_batchnorm(whole, data, samples=16)
    micro_handle = insert_batchnorm(micro, data.as_micro_batches(), samples=16)
    _perturbed(batch_handle), _perturbed(micro_handle)
    batch_handle.recalibrate(data, samples=16, batch_size=16)  # one batch of all 16 samples
    micro_handle.recalibrate(data.as_micro_batches(), samples=16, batch_size=16)
    first = min(batch_handle.layers)  # its input is the data itself, whatever the layers before do
    expected, actual = batch_handle.layers[first], micro_handle.layers[first]
    np.testing.assert_allclose(actual.running_mean.numpy(), expected.running_mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(actual.running_var.numpy(), expected.running_var.numpy(), rtol=1e-3, atol=1e-6)


@torch.no_grad()
def test_micro_batch_statistics_agree_in_every_layer(resnet_data):
    """Each layer's statistics are those of its input as the layers before it normalise after recalibration,
    as one batch of every sample gives them. With the layers before still at stale statistics while a layer
    is measured, the deep layers of ddddocr's CRNN came out at scales up to 1e11 and its fine-tune overflowed."""
    model, data = resnet_data
    whole, micro = build_proxy(model), build_proxy(model)
    batch_handle = insert_batchnorm(whole, data, samples=16)
    micro_handle = insert_batchnorm(micro, data.as_micro_batches(), samples=16)
    _perturbed(batch_handle), _perturbed(micro_handle)
    batch_handle.recalibrate(data, samples=16, batch_size=16)
    micro_handle.recalibrate(data.as_micro_batches(), samples=16, batch_size=16)
    for idx, expected in batch_handle.layers.items():
        actual = micro_handle.layers[idx]
        spread = expected.running_var.sqrt().numpy()
        np.testing.assert_allclose(actual.running_mean.numpy(), expected.running_mean.numpy(), rtol=0,
                                   atol=1e-3 * spread.max(), err_msg=f"layer {idx}")
        np.testing.assert_allclose(actual.running_var.numpy(), expected.running_var.numpy(), rtol=0.01,
                                   atol=1e-6, err_msg=f"layer {idx}")


@torch.no_grad()
def test_micro_batch_training_keeps_the_running_statistics(resnet_data):
    model, data = resnet_data
    micro = data.as_micro_batches()
    proxy = build_proxy(model)
    handle = insert_batchnorm(proxy, micro, samples=16)
    before = {idx: layer.running_var.clone() for idx, layer in handle.layers.items()}
    proxy.eval()
    evaluated = batch_outputs(proxy, micro, np.arange(4), "cpu")[0]
    proxy.train()
    trained = batch_outputs(proxy, micro, np.arange(4), "cpu")[0]
    assert all(torch.equal(layer.running_var, before[idx]) for idx, layer in handle.layers.items())
    torch.testing.assert_close(trained, evaluated)


@torch.no_grad()
def test_fold_scale_ignores_variance_below_float_resolution():
    """A channel at mean 3000 with std 1e-3 varies below what float32 resolves there: the fold must not
    multiply its rounding noise by 4000 (layout_cdla and silero's VAD failed the equivalence check)."""
    layer = NormalisedConv(torch.nn.Identity(), 2)
    layer.running_mean.copy_(torch.tensor([3000.0, 0.0]))
    layer.running_var.copy_(torch.tensor([1e-6, 1e-6]))
    layer.weight.copy_(torch.tensor([4.0, 4.0]))
    scale = layer.scale()
    assert scale[0] == pytest.approx(4.0 / 3.0, rel=1e-5)  # floored at (1e-3 x 3000)^2
    assert scale[1] == pytest.approx(4.0 / (1e-6 + 1e-5) ** 0.5, rel=1e-5)  # a small mean: the variance as it is


def test_micro_batch_layers_do_not_count_as_normalising(resnet_data):
    """Fixed statistics normalise nothing: the weights then train as in an unnormalised model (SGD at 1e-3,
    steps clipped), not at the 0.03 that BatchNorm on batch statistics allows. A tf2onnx BlazeFace with a
    fixed batch of 1 reached outputs of 1e5 after one data-free step at 0.03, then NaN."""
    model, data = resnet_data
    assert insert_batchnorm(build_proxy(model), data, samples=16).normalises_most()
    assert not insert_batchnorm(build_proxy(model), data.as_micro_batches(), samples=16).normalises_most()
