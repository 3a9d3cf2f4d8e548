"""The graph's own BatchNormalization nodes (paddle2onnx: Conv without bias, then BatchNormalization) train
on batch statistics during recovery, are re-estimated on the pruned model, and are written back."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from darp_onnx.proxy import build_proxy
from darp_onnx.training.batchnorm import insert_batchnorm
from darp_onnx.training.dataset import Dataset, synthetic_dataset
from darp_onnx.training.recovery import RecoveryRecipe, recover
from darp_onnx.training.steps import predict
from tests.groups.builder import GraphBuilder


def _unfolded_cnn():
    """Two Conv-without-bias -> BatchNormalization -> Relu layers, statistics unlike the data's; a bias-free head."""
    b = GraphBuilder(31)
    x = b.input("x", ["N", 3, 8, 8])
    y = b.cbr(b.cbr(x, 3, 8), 8, 8)
    return b.build(b.conv(y, 8, 4, k=1, bias=False))


def _real(model, samples: int) -> Dataset:
    """Samples that count as data (not synthetic): graph BatchNorm trains on those only."""
    return Dataset(synthetic_dataset(model, samples=samples, seed=0).inputs, source="samples.npz")


def _ort(model, feeds: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": feeds})[0]


def test_graph_batchnorm_counts_as_normalising_and_only_while_recovering():
    model = _unfolded_cnn()
    data = _real(model, 16)
    proxy = build_proxy(model)
    handle = insert_batchnorm(proxy, data, samples=16)
    assert not handle.layers and not handle.normalises_most()  # no bias to fold into: nothing inserted
    handle.train_graph_batchnorm(synthetic_dataset(model, samples=16, seed=0))
    assert not handle.graph_layers  # synthetic feeds: the stored statistics stay
    handle.train_graph_batchnorm(data.as_micro_batches())
    assert not handle.graph_layers  # one sample at a time: no batch statistics
    handle.train_graph_batchnorm(data)
    assert len(handle.graph_layers) == 2 and handle.normalises_most()
    handle.fold()
    assert not any(getattr(m, "batch_statistics", False) for m in proxy.nodes)


def test_recovery_trains_graph_batchnorm_on_batch_statistics_and_writes_them_back():
    model = _unfolded_cnn()
    data = _real(model, 32)
    proxy = build_proxy(model)
    teacher = predict(proxy, data)
    stats = [proxy.tensor(step.inputs[3]).clone() for step in proxy.steps if step.op_type == "BatchNormalization"]
    recover(proxy, data, teacher, RecoveryRecipe(steps=4, batch_size=8))  # statistics re-estimated on the data
    after = [proxy.tensor(step.inputs[3]) for step in proxy.steps if step.op_type == "BatchNormalization"]
    assert all(not torch.allclose(a, b) for a, b in zip(after, stats, strict=True))
    assert not any(getattr(m, "batch_statistics", False) for m in proxy.nodes)
    np.testing.assert_allclose(_ort(proxy.to_onnx(), data.inputs["x"]), predict(proxy, data)[0], rtol=1e-4,
                               atol=1e-4)
