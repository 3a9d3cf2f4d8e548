"""Distillation over models with integer outputs (token ids, argmax): those outputs carry no gradient."""

from __future__ import annotations

import numpy as np
import torch

from darp_onnx.search.loss import TaskLoss


def test_distillation_skips_integer_outputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, size=(6, 3)).astype(np.int64)
    scores = rng.standard_normal((6, 4)).astype(np.float32)
    loss_fn = TaskLoss(teacher=[ids, scores])
    student = torch.tensor(scores[:2] * 2.0, requires_grad=True)
    loss = loss_fn([torch.from_numpy(ids[:2]), student], np.array([0, 1]))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert student.grad is not None and torch.count_nonzero(student.grad) > 0
