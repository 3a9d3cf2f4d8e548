"""`--channel-multiple auto` on layers too small for the kernel block (MTCNN's 10/16/32-channel layers at
half the MACs): the multiple halves until the budget is reachable; an explicit multiple is kept and refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import darp_onnx
import darp_onnx.workflows.prune as prune_workflow
from darp_onnx.errors import OptionError, ValidationFailedError
from darp_onnx.validation.checks import check_equivalence
from tests.groups.builder import GraphBuilder


def small_net():
    b = GraphBuilder(31, opset=17)
    h = b.cbr(b.cbr(b.input("x", ["n", 3, 8, 8]), 3, 10), 10, 16)
    return b.build(b.conv(h, 16, 4))


def _prune(tmp_path, **kw):
    return darp_onnx.prune(small_net(), output=tmp_path / "p.onnx", target_flops=0.5, search_steps=3,
                           finetune_steps=1, batch_size=4, synthetic_samples=8, latency_runs=1, **kw)


def test_auto_multiple_halves_until_the_budget_is_reachable(tmp_path, monkeypatch):
    monkeypatch.setattr(prune_workflow, "kernel_channel_multiple", lambda device="cpu": 16)
    result = _prune(tmp_path)
    assert result.extraction.channel_multiple < 16
    assert result.flops_after <= 0.5 * result.flops_before


def test_explicit_multiple_is_kept(tmp_path):
    with pytest.raises(OptionError, match="channel_multiple 16 the smallest reachable"):
        _prune(tmp_path, channel_multiple=16)


def test_equivalence_tolerance_scales_with_the_output():
    cell = np.array([[3.5, 0.0, -2.0, 0.0]], np.float32)  # an LSTM cell state: float32 noise of 3.5-sized values
    check_equivalence([cell + np.array([[0, 1.5e-4, 0, -1.5e-4]], np.float32)], [cell], ["state"], "m")
    small = np.full((2, 8), 1e-3, np.float32)
    with pytest.raises(ValidationFailedError, match="output 'state' differs"):
        check_equivalence([small + 1.5e-4], [small], ["state"], "m")


def one_group_net():
    """One 32-channel group and a small frozen side output: at half the MACs the group keeps just under 16."""
    b = GraphBuilder(32, opset=17)
    x = b.input("x", ["n", 3, 8, 8])
    return b.build(b.conv(b.op("Relu", b.conv(x, 3, 32)), 32, 4), b.conv(x, 3, 2))


def test_auto_multiple_does_not_undershoot_the_budget_far(tmp_path, monkeypatch):
    monkeypatch.setattr(prune_workflow, "kernel_channel_multiple", lambda device="cpu": 8)
    kw = dict(target_flops=0.5, search_steps=3, finetune_steps=1, batch_size=4, synthetic_samples=8,
              latency_runs=1)
    coarse = darp_onnx.prune(one_group_net(), output=tmp_path / "a.onnx", channel_multiple=8, **kw)
    auto = darp_onnx.prune(one_group_net(), output=tmp_path / "b.onnx", **kw)
    assert coarse.flops_after < 0.9 * 0.5 * coarse.flops_before  # 8 channels: far under the budget
    assert coarse.flops_after < auto.flops_after <= 0.5 * auto.flops_before
    assert auto.extraction.channel_multiple < 8


def test_equivalence_allows_the_gap_the_original_model_already_has():
    probs = np.array([[0.2, 0.8]], np.float32)
    off = probs + np.array([[1e-3, -1e-3]], np.float32)  # magika: its proxy already differs by 5e-4 unpruned
    with pytest.raises(ValidationFailedError, match="differs by up to"):
        check_equivalence([off], [probs], ["p"], "m")
    check_equivalence([off], [probs], ["p"], "m", baseline=[5e-4])
    with pytest.raises(ValidationFailedError, match="the original model's proxy differs by 1e-05"):
        check_equivalence([off], [probs], ["p"], "m", baseline=[1e-5])


def test_overflowing_finetune_falls_back_to_the_pruned_weights(tmp_path, monkeypatch):
    """layout_cdla (PicoDet): two fine-tune steps on synthetic data made an output overflow to NaN; the run keeps
    the pruned weights without the fine-tune and still writes a validated model."""
    real = prune_workflow.recover_weights

    def overflowing(proxy, *args, **kw):
        losses = real(proxy, *args, **kw)
        with torch.no_grad():
            next(iter(proxy.parameters())).fill_(float("inf"))
        return losses

    monkeypatch.setattr(prune_workflow, "recover_weights", overflowing)
    notes = []
    result = darp_onnx.prune(small_net(), output=tmp_path / "p.onnx", target_flops=0.7, search_steps=3,
                             finetune_steps=2, batch_size=4, synthetic_samples=8, latency_runs=1, channel_multiple=1,
                             progress=lambda stage, info: notes.append(info.get("message", "")))
    assert result.finetune_steps == 0
    assert any("overflow" in n for n in notes)
