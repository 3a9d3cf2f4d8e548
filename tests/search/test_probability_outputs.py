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


def _softmax_classifier(classes: int = 40):
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(4)
    hidden = b.op("Relu", b.op("MatMul", b.input("x", ["N", 6]), b.weight(6, 16)))
    logits = b.op("Mul", b.op("MatMul", hidden, b.weight(16, classes)), b.const(np.array(30.0, np.float32)))
    return b.build(b.op("Flatten", b.op("Softmax", logits, axis=1))), logits  # saturated: most classes round to 0


def test_a_softmax_output_is_trained_through_its_logits():
    """A saturated softmax has no gradient: the prune run adds the logits as an output and the losses use them."""
    from darp_onnx.training.decode_targets import softmax_logits
    from darp_onnx.workflows.config import prune_config
    from darp_onnx.workflows.prune import analyse_costs, load, prepare_data

    model, logits = _softmax_classifier()
    assert softmax_logits(model, {logits: (1, 40)}) == {model.graph.output[0].name: logits}
    assert softmax_logits(model, {logits: (1, 5, 40)}) == {} == softmax_logits(model, {})  # per position: MSE
    run = prepare_data(analyse_costs(load(model, prune_config(write=False, synthetic_samples=16, device="cpu"))))
    assert run.logits_of == {0: 1} and run.proxy.output_names[1] == logits
    probs, raw = run.reference
    assert np.allclose(probs, _softmax(raw), atol=1e-6)
    student = [torch.from_numpy(np.full_like(probs, 1 / probs.shape[1])), torch.zeros(raw.shape, requires_grad=True)]
    loss = run.loss_fn(student, np.arange(16))
    assert abs(float(loss.detach()) - _kl(_softmax(raw).clip(1e-30), np.full_like(probs, 1 / probs.shape[1]))) < 1e-3
    loss.backward()
    assert student[1].grad.abs().sum() > 0  # through the logits, not the saturated probabilities


def test_labels_and_recovery_use_the_logits_in_place_of_the_probabilities():
    rng = np.random.default_rng(5)
    raw = 20 * rng.standard_normal((6, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=6)
    logits = torch.from_numpy(raw)
    outputs = [torch.from_numpy(_softmax(raw)), logits]
    expected = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))
    by_labels = TaskLoss(labels=labels, reference=[_softmax(raw), raw], logits_of={0: 1})(outputs, np.arange(6))
    assert abs(float(by_labels) - expected) < 1e-5
    recovery = RecoveryLoss(labels, [_softmax(raw), raw], distill=0.0, temperature=2.0, logits_of={0: 1})
    assert abs(float(recovery(outputs, np.arange(6))) - expected) < 1e-5
    distilled = RecoveryLoss(None, [_softmax(raw), raw], distill=1.0, temperature=1.0, logits_of={0: 1})
    assert abs(float(distilled(outputs, np.arange(6)))) < 1e-6  # the logits match; the probabilities not counted


def test_a_softmax_spelled_out_as_exp_over_its_sum_gives_its_logits():
    """jax2tf's magika: Div(Exp(x - max), Expand(Reshape(ReduceSum(Exp(...))))); trained as probabilities, its
    pruned copy drifted from the masked proxy past the equivalence tolerance (0.0036)."""
    from darp_onnx.training.decode_targets import softmax_logits
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(6)
    logits = b.op("MatMul", b.input("x", ["N", 6]), b.weight(6, 12))
    shifted = b.op("Sub", logits, b.op("ReduceMax", logits, axes=[1], keepdims=1))
    exp = b.op("Exp", shifted)
    total = b.op("ReduceSum", exp, b.const(np.array([1], np.int64)), keepdims=0)
    total = b.op("Reshape", total, b.const(np.array([-1, 1], np.int64)))
    model = b.build(b.op("Div", exp, b.op("Expand", total, b.const(np.array([1, 12], np.int64)))))
    assert softmax_logits(model, {shifted: (1, 12)}) == {model.graph.output[0].name: shifted}
    b2 = GraphBuilder(7)
    e = b2.op("Exp", b2.op("MatMul", b2.input("x", ["N", 6]), b2.weight(6, 12)))
    other = b2.build(b2.op("Div", e, b2.const(np.array(3.0, np.float32))))  # not a sum of the same Exp
    assert softmax_logits(other, {e: (1, 12)}) == {}
