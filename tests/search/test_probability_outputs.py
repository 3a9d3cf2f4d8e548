"""Class scores that are a Softmax's output are matched as probabilities: taken as logits, their softmax is
nearly flat and the losses said 0.002 where a tempo classifier (256 classes) had lost every decision."""

from __future__ import annotations

import numpy as np
import torch

from darp_onnx.search.loss import TaskLoss, is_probabilities
from darp_onnx.training.recovery import RecoveryLoss


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


def test_softmax_rows_are_probabilities_and_logits_or_sigmoids_are_not():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((8, 256)).astype(np.float32)
    assert is_probabilities(_softmax(logits)) and is_probabilities(_softmax(logits)[:, None])  # [N, 1, C] too
    assert not is_probabilities(logits) and not is_probabilities(1 / (1 + np.exp(-logits)))
    assert not is_probabilities(_softmax(logits)[:, :1]) and not is_probabilities(np.full((4, 3), np.nan))


def test_distillation_on_probabilities_is_the_kl_of_the_distributions():
    rng = np.random.default_rng(1)
    teacher = _softmax(6 * rng.standard_normal((8, 256)))
    lost = np.full_like(teacher, 1 / 256)  # a pruned model that lost every decision
    expected = _kl(teacher, lost)
    loss = TaskLoss(teacher=[teacher])([torch.from_numpy(lost)], np.arange(8))
    assert expected > 1 and abs(float(loss) - expected) < 1e-3 * expected  # read as logits: under 0.01
    recovery = RecoveryLoss(None, [teacher], distill=1.0, temperature=1.0)([torch.from_numpy(lost)], np.arange(8))
    assert abs(float(recovery) - expected) < 1e-3 * expected
    same = TaskLoss(teacher=[teacher])([torch.from_numpy(teacher)], np.arange(8))
    assert abs(float(same)) < 1e-6


def test_labels_on_a_probability_output_give_its_cross_entropy():
    rng = np.random.default_rng(2)
    probs = _softmax(3 * rng.standard_normal((6, 10)))
    labels = rng.integers(0, 10, size=6)
    loss = TaskLoss(labels=labels, reference=[probs])([torch.from_numpy(probs)], np.arange(6))
    assert abs(float(loss) + np.mean(np.log(probs[np.arange(6), labels]))) < 1e-5
    mixed = RecoveryLoss(labels, [probs], distill=0.0, temperature=2.0)([torch.from_numpy(probs)], np.arange(6))
    assert abs(float(mixed) - float(loss)) < 1e-5


def test_the_fine_tune_loop_scores_a_softmax_model_by_its_probabilities():
    from darp_onnx.proxy import build_proxy
    from darp_onnx.training.dataset import Dataset
    from darp_onnx.training.loop import evaluate, first_output_is_probabilities
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(3)
    model = b.build(b.op("Softmax", b.op("MatMul", b.input("x", ["N", 4]), b.weight(4, 10)), axis=1))
    rng = np.random.default_rng(3)
    data = Dataset({"x": rng.standard_normal((12, 4)).astype(np.float32)}, labels=rng.integers(0, 10, size=12))
    proxy = build_proxy(model)
    assert first_output_is_probabilities(proxy, data, "cpu")
    with torch.no_grad():
        probs = proxy(x=torch.from_numpy(data.inputs["x"])).numpy()
    loss, accuracy = evaluate(proxy, data, "cpu")
    assert abs(loss + np.mean(np.log(probs[np.arange(12), data.labels]))) < 1e-5
    assert accuracy == np.mean(probs.argmax(1) == data.labels)
