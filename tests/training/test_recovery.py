"""Recovery on a folded graph: BatchNorm inserted without changing the function, folded back exactly,
and a pruned sample CNN that recovers in a few dozen steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search import extract_masks, make_budget
from darp_onnx.search.baselines import l1_scores
from darp_onnx.search.gates import attach_gates
from darp_onnx.training.batchnorm import insert_batchnorm
from darp_onnx.training.dataset import load_dataset
from darp_onnx.training.recovery import RecoveryRecipe, lr_factor, recover
from darp_onnx.training.steps import (
    DIVERGED_FACTOR,
    DIVERGED_FLOOR,
    MAX_RELATIVE_STEP,
    DivergenceGuard,
    accuracy,
    make_weight_optimizer,
    mostly_dense,
    predict,
    run_steps,
    trainable_parameters,
)

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a loaded 2-core machine two threads made these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet():
    model = load_model(SAMPLES / "resnet.onnx")
    train, test = load_dataset(DATA, model, split="train"), load_dataset(DATA, model, split="test")
    return model, train.subset(np.arange(192)), test.subset(np.arange(128))


def _outputs(proxy, data):
    return predict(proxy, data.subset(np.arange(64)))[0]


def test_inserted_batchnorm_leaves_the_function_unchanged(resnet):
    model, train, _ = resnet
    proxy = build_proxy(model).eval()
    before = _outputs(proxy, train)
    handle = insert_batchnorm(proxy, train, samples=64)
    assert len(handle.layers) == sum(step.op_type == "Conv" for step in proxy.steps)
    np.testing.assert_allclose(_outputs(proxy, train), before, atol=2e-4, rtol=1e-4)


def test_fold_reproduces_the_trained_normalisation(resnet):
    model, train, _ = resnet
    proxy = build_proxy(model).eval()
    handle = insert_batchnorm(proxy, train, samples=64)
    torch.manual_seed(0)
    with torch.no_grad():  # a normalisation far from identity: what training would leave
        for layer in handle.layers.values():
            layer.weight.mul_(1.0 + 0.5 * torch.rand_like(layer.weight))
            layer.bias.add_(torch.randn_like(layer.bias))
    handle.recalibrate(train, samples=128, batch_size=64)
    proxy.eval()
    normalised = _outputs(proxy, train)
    handle.fold()
    assert not any(type(node).__name__ == "NormalisedConv" for node in proxy.nodes)
    np.testing.assert_allclose(_outputs(proxy, train), normalised, atol=1e-4, rtol=1e-4)


def test_lr_factor_warms_up_then_decays_to_zero():
    factors = [lr_factor("cosine", step, 100, 0.1) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and max(factors) == pytest.approx(1.0)
    assert factors[-1] < 0.01 and all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


def test_l1_pruned_to_15_percent_recovers_in_25_steps(resnet):
    """The issue-15 failure: Adam on the folded graph stayed at chance (about 0.2) here."""
    model, train, test = resnet
    analysis = analyse(model)
    costs = CostModel(model, analysis, resolve_input_shapes(model, {}))
    masks = extract_masks(l1_scores(model, analysis), costs, make_budget(costs, target_flops=0.15),
                          channel_multiple=1)
    proxy = build_proxy(model).eval()
    teacher = predict(proxy, train)
    gates = attach_gates(proxy, analysis)
    gates.set_masks(masks)
    chance = accuracy(proxy, test)
    gates.clear()
    recover(proxy, train, teacher, RecoveryRecipe(steps=25, seed=0), set_pruned=lambda: gates.set_masks(masks))
    assert chance < 0.5
    assert accuracy(proxy, test) > 0.9


def test_diverging_finetune_keeps_the_last_finite_weights():
    """An absurd learning rate overflows the weights (PicoDet's layout detector went to NaN in two steps):
    the fine-tune stops at the last weights whose loss was finite, and the proxy's outputs stay finite."""
    from darp_onnx.training.dataset import synthetic_dataset
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(41, opset=17)
    model = b.build(b.conv(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 8), 8, 4))
    proxy = build_proxy(model)
    data = synthetic_dataset(model, samples=16, shapes={"x": (1, 3, 8, 8)})
    teacher = [o * 1e6 for o in predict(proxy, data)]  # far targets: each step overshoots more
    # Adam: unnormalised SGD's steps are clipped to 1% of each weight (the test below), it cannot overflow
    losses = recover(proxy, data, teacher, RecoveryRecipe(steps=40, lr=1e6, batch_size=8, batchnorm=False,
                                                          warmup=0.0, schedule="constant", optimizer="adam"))
    assert all(np.isfinite(losses)) and len(losses) < 40
    assert np.isfinite(predict(proxy, data)[0]).all()


def test_unnormalised_sgd_moves_each_weight_by_at_most_one_percent():
    """The clip bounds learning rate x gradient norm by 1% of the weight's norm (the first Nesterov step
    then moves the weight by 1.9 times that)."""
    weights = [torch.nn.Parameter(torch.full((4,), 2.0)), torch.nn.Parameter(torch.zeros(3))]
    weights[0].grad = torch.full((4,), 1e4)  # norm 2e4 against a weight of norm 4
    weights[1].grad = torch.full((3,), 1e-5)  # under 1% of the norm floor (1e-3) per step: left as it is
    make_weight_optimizer(weights, "sgd", 0.1, clip=True).step()
    assert float(torch.linalg.norm(weights[0] - 2.0)) == pytest.approx(1.9 * MAX_RELATIVE_STEP * 4.0, rel=1e-5)
    assert torch.allclose(weights[1], torch.full((3,), -1.9e-6))
    plain = torch.nn.Parameter(torch.full((4,), 2.0))
    plain.grad = torch.full((4,), 1e4)
    make_weight_optimizer([plain], "sgd", 0.1).step()  # layers BatchNorm normalises: not clipped
    assert float(plain[0]) == pytest.approx(2.0 - 1.9e3)


def test_the_optimizer_follows_the_normalisation_and_the_kind_of_layers(resnet):
    """A CNN gets BatchNorm after (nearly) every layer: SGD at 0.03. The ViT's only Conv is its patch
    embedding: BatchNorm there does not make its training robust, and its layers are MatMuls: Adam at 1e-3.
    A CNN with no BatchNorm to re-insert keeps SGD at 1e-3 (Adam left the folded ResNet at constant outputs)."""
    chosen, dense = {}, {}
    for name in ("resnet", "vit"):
        model = load_model(SAMPLES / f"{name}.onnx")
        data = load_dataset(DATA, model, split="train").subset(np.arange(32))
        proxy = build_proxy(model).eval()
        dense[name] = mostly_dense(proxy)  # resnet: 15 Conv, 1 Gemm; vit: 1 Conv, 17 MatMul/Gemm
        handle = insert_batchnorm(proxy, data, samples=32)
        chosen[name] = RecoveryRecipe(steps=0).optimizer_with(handle.normalises_most(), mostly_dense(proxy))
        assert len(handle.layers) >= 1
        handle.fold()
    assert dense == {"resnet": False, "vit": True}
    assert chosen == {"resnet": ("sgd", 0.03), "vit": ("adam", 1e-3)}
    assert RecoveryRecipe(steps=0).optimizer_with(False, dense=False) == ("sgd", 1e-3)
    assert RecoveryRecipe(steps=0, lr=0.2).optimizer_with(False, True) == ("adam", 0.2)  # an explicit rate stays
    assert RecoveryRecipe(steps=0, optimizer="sgd").optimizer_with(True, True) == ("sgd", 0.03)  # a named one too


def test_recovery_loss_reads_micro_batch_class_scores_as_class_scores():
    """A model in micro-batches stacks its [1, C] class scores into [N, 1, C]: the recovery loss must match
    them with the KL of the softmaxes, as for [N, C], not with an MSE over the teacher's variance."""
    from darp_onnx.training.recovery import RecoveryLoss

    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    flat = RecoveryLoss(None, [teacher], distill=0.5, temperature=2.0)
    stacked = RecoveryLoss(None, [teacher[:, None]], distill=0.5, temperature=2.0)
    idx = np.arange(6)
    expected = float(flat((torch.from_numpy(student),), idx))
    assert float(stacked((torch.from_numpy(student[:, None]),), idx)) == pytest.approx(expected, rel=1e-6)


def test_a_loss_far_above_the_first_is_a_divergence():
    guard = DivergenceGuard(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]))
    assert not guard.diverged(5.6)  # the first loss sets the scale
    assert not guard.diverged(5.6 * DIVERGED_FACTOR * 0.99)
    assert guard.diverged(5.6 * DIVERGED_FACTOR * 1.01) and guard.diverged(float("nan"))
    small = DivergenceGuard(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]))
    small.diverged(1e-4)  # a near-perfect start: a sub-network that outputs nothing (loss ~1) is no divergence
    assert not small.diverged(DIVERGED_FLOOR * DIVERGED_FACTOR * 0.99)
    assert not guard.go_on()  # Adam's steps cannot be clipped: the loop stops


def test_unclipped_sgd_goes_on_clipped_after_a_divergence():
    """Unclipped SGD (as on layers BatchNorm normalises) at an absurd rate blows the weights up at its first
    step; the loop undoes that step, clips the rest and runs them, and ends finite (before, it stopped at
    a non-finite loss, or, where the loss stayed finite, went on from weights that gave 6e23)."""
    from darp_onnx.training.dataset import synthetic_dataset
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(41, opset=17)
    model = b.build(b.conv(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 8), 8, 4))
    proxy = build_proxy(model)
    data = synthetic_dataset(model, samples=16, shapes={"x": (1, 3, 8, 8)})
    teacher = [o * 10 for o in predict(proxy, data)]
    params = trainable_parameters(proxy)
    optimizer = make_weight_optimizer(params, "sgd", 1e4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def loss_fn(outputs, idx):
        return torch.nn.functional.mse_loss(outputs[0], torch.from_numpy(teacher[0][idx]))

    losses = run_steps(proxy, data, loss_fn, optimizer, schedule, params, steps=20, batch_size=8)
    assert getattr(optimizer, "darp_clipped", False)
    assert len(losses) == 19 and all(np.isfinite(losses))  # the diverged step is not counted
    assert max(losses) < DIVERGED_FACTOR * max(losses[0], DIVERGED_FLOOR)
    assert np.isfinite(predict(proxy, data)[0]).all()


def test_a_divergence_with_every_step_capped_is_told_apart_from_one_the_rate_caused():
    """swift-f0's pitch tracker diverged with its steps capped: a 30x lower --lr gave the same losses, so the
    note must not advise it; where the rate set the steps (Adam) it still does."""
    from darp_onnx.training.dataset import synthetic_dataset
    from darp_onnx.workflows.prune import _diverged_note
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(43, opset=17)
    model = b.build(b.conv(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 8), 8, 4))
    data = synthetic_dataset(model, samples=16, shapes={"x": (1, 3, 8, 8)})
    calls = []

    def blows_up_after_the_first_step(outputs, idx):
        calls.append(1)
        scale = 1.0 if len(calls) == 1 else 1e9  # whatever the step did
        return scale * outputs[0].float().pow(2).mean()

    stopped = {}
    for name in ("sgd", "adam"):
        proxy = build_proxy(model)
        params = trainable_parameters(proxy)
        optimizer = make_weight_optimizer(params, name, 1e-3)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        calls.clear()
        stopped[name] = run_steps(proxy, data, blows_up_after_the_first_step, optimizer, schedule, params, steps=10,
                                  batch_size=8)
    assert len(stopped["sgd"]) == 1 and stopped["sgd"].diverged_capped  # unclipped, then capped, then stopped
    assert len(stopped["adam"]) == 1 and not stopped["adam"].diverged_capped
    assert "--lr" not in _diverged_note(stopped["sgd"], 10) and "at most 1%" in _diverged_note(stopped["sgd"], 10)
    assert "a lower --lr may let it run" in _diverged_note(stopped["adam"], 10)


def test_a_fine_tune_whose_loss_soars_at_once_starts_again_at_a_lower_rate():
    """PESTO's pitch network went from 0.056 to 4.9 and 437 in two SGD steps at 0.03 and kept nothing of its
    fine-tune; at 3e-4 it trained. A loss ten times the first within the first steps starts the loop again from
    the first weights at a tenth of the rate (twice at most); a rate that trains is left as it is."""
    from darp_onnx.training.dataset import synthetic_dataset
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(43, opset=17)
    model = b.build(b.conv(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 8), 8, 4))
    data = synthetic_dataset(model, samples=16, shapes={"x": (1, 3, 8, 8)})
    teacher = predict(build_proxy(model), data)

    def fine_tune(lr: float):
        proxy = build_proxy(model)
        losses = recover(proxy, data, teacher, RecoveryRecipe(steps=12, lr=lr, batch_size=8, warmup=0.0,
                                                              schedule="constant", optimizer="sgd"))
        return losses, predict(proxy, data)

    soaring, outputs = fine_tune(1e4)
    assert soaring.lowered == pytest.approx([1e3, 1e2]) and soaring.ran() == 12
    assert np.isfinite(outputs[0]).all()
    calm, _ = fine_tune(1e-3)
    assert calm.lowered == [] and len(calm) == 12
