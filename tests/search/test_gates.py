from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.groups import analyse
from darp_onnx.proxy import build_proxy
from darp_onnx.search.gates import attach_gates
from tests.groups.harness import feeds_for
from tests.groups.models import MODELS


def _run(proxy, feeds):
    with torch.no_grad():
        return [v.numpy() for v in proxy.run({k: torch.from_numpy(a) for k, a in feeds.items()}).values()]


@pytest.mark.parametrize("name", ["residual", "c2f", "flatten_gemm", "depthwise_se"])
def test_all_one_gates_leave_the_proxy_unchanged(name):
    model = MODELS[name]()
    analysis = analyse(model)
    proxy = build_proxy(model)
    feeds = feeds_for(model)
    plain = _run(proxy, feeds)
    handle = attach_gates(proxy, analysis)
    handle.set({g.id: torch.ones(g.size) for g in analysis.prunable()})
    for a, e in zip(_run(proxy, feeds), plain, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)
    handle.remove()
    assert proxy.input_transforms == {}


def test_gates_carry_gradients():
    model = MODELS["residual"]()
    analysis = analyse(model)
    proxy = build_proxy(model)
    handle = attach_gates(proxy, analysis)
    gates = {g.id: torch.full((g.size,), 0.5, requires_grad=True) for g in analysis.prunable()}
    handle.set(gates)
    out = proxy(*[torch.from_numpy(v) for v in feeds_for(model).values()])
    out.square().sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates.values())


def test_clear_restores_and_frozen_masks_are_refused():
    model = MODELS["conv_chain"]()
    analysis = analyse(model)
    proxy = build_proxy(model)
    feeds = feeds_for(model)
    plain = _run(proxy, feeds)
    handle = attach_gates(proxy, analysis)
    handle.set_masks({0: np.array([1, 0, 0, 0, 0, 0], bool)})
    assert not np.allclose(_run(proxy, feeds)[0], plain[0])
    handle.clear()
    np.testing.assert_allclose(_run(proxy, feeds)[0], plain[0])
    with pytest.raises(ValueError, match="frozen"):
        handle.set_masks({2: np.array([1, 0, 1, 1], bool)})
