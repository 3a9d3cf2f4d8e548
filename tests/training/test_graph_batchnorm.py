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


def test_small_training_batches_keep_the_graph_statistics_while_training_and_re_estimate_them():
    """Batches of a few samples train on the stored statistics (they no longer count as normalising); the
    re-estimation on the pruned model still runs on batch statistics."""
    model = _unfolded_cnn()
    data = _real(model, 16)
    proxy = build_proxy(model)
    handle = insert_batchnorm(proxy, data, samples=16, training_batch=4)
    handle.train_graph_batchnorm(data)
    assert len(handle.graph_layers) == 2 and not handle.normalises_most()
    assert not any(layer.module.batch_statistics for layer in handle.graph_layers)
    proxy.eval()
    evaluated = predict(proxy, data)[0]
    proxy.train()
    with torch.no_grad():
        trained = proxy(x=torch.from_numpy(data.inputs["x"]))
    np.testing.assert_allclose(trained.numpy(), evaluated, rtol=1e-5, atol=1e-5)  # no batch statistics used
    stats = [layer.mean.clone() for layer in handle.graph_layers]
    handle.recalibrate(data, samples=16, batch_size=8)
    assert all(not torch.allclose(layer.mean, before) for layer, before in zip(handle.graph_layers, stats, strict=True))
    assert not any(layer.module.batch_statistics for layer in handle.graph_layers)


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


def test_finetune_trains_graph_batchnorm_and_writes_the_statistics(tmp_path):
    """`finetune` with inherited weights: the graph's BatchNormalization nodes train on batch statistics and
    end with statistics re-estimated on the data (the written model is checked against the proxy inside)."""
    from onnx import numpy_helper

    from darp_onnx.workflows.finetune import finetune

    b = GraphBuilder(44)
    h = b.op("Flatten", b.op("GlobalAveragePool", b.cbr(b.cbr(b.input("x", ["N", 3, 8, 8]), 3, 8), 8, 8)))
    model = b.build(b.op("Gemm", h, b.weight(8, 3)))
    rng = np.random.default_rng(0)
    path, data = tmp_path / "m.onnx", tmp_path / "d.npz"
    import onnx

    onnx.save(model, path)
    np.savez(data, x=rng.normal(2.0, 3.0, (48, 3, 8, 8)).astype(np.float32), labels=rng.integers(0, 3, 48))
    finetune(path, data=data, output=tmp_path / "t.onnx", steps=6, batch_size=16, val_fraction=0.0, device="cpu")
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "t.onnx").graph.initializer}
    means = [n.input[3] for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert all(not np.allclose(before[m], after[m]) for m in means)
