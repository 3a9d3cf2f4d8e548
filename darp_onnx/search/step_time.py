"""Measured seconds of one search step and of one forward pass, for the time-budget planner.

A step is timed as the search runs it: gates sampled, a forward and a backward pass through the gated
proxy. Gradients are discarded and no optimiser steps, so the weights are not changed.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from darp_onnx.groups import ChannelAnalysis
from darp_onnx.proxy import ProxyModel
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.relax import sample_gates
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.steps import batch_inputs, batch_outputs

TIMED_REPEATS = 2  # forward passes timed after a warm-up; a training step is timed once (they are slower)
SLOW_STEP_S = 2.0  # a warm-up step this slow is the measurement: its allocations are a small share of it


def _sync(device: torch.device | str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure_step_seconds(proxy: ProxyModel, analysis: ChannelAnalysis, dataset: Dataset, batch: int, *,
                         device: torch.device | str = "cpu", repeats: int = 1, warm_up: bool = True) -> float:
    """Median seconds of a gated forward + backward on `batch` samples (after a warm-up step unless the proxy
    has run a step already: the first one pays for allocations). A warm-up step slower than SLOW_STEP_S is
    taken as the measurement (a slight over-estimate): on a 3-GMAC detector a second step cost 16 s of the
    5-minute budget."""
    generator = torch.Generator().manual_seed(0)
    idx = np.arange(batch) % len(dataset)
    handle = attach_gates(proxy, analysis)
    proxy.train()
    times = []
    try:
        for _ in range(repeats + int(warm_up)):
            start = time.perf_counter()
            logits = {g.id: torch.full((g.size,), 3.0, device=device, requires_grad=True) for g in analysis.prunable()}
            handle.set({gid: sample_gates(th, 0.5, generator=generator) for gid, th in logits.items()})
            outputs = batch_outputs(proxy, dataset, idx, device)  # micro-batches too, as the search runs them
            loss = sum(o.float().square().mean() for o in outputs if o.is_floating_point())
            if isinstance(loss, torch.Tensor) and loss.requires_grad:  # integer outputs alone: a forward only
                loss.backward()
            _sync(device)
            times.append(time.perf_counter() - start)
            if warm_up and len(times) == 1 and times[0] >= SLOW_STEP_S:
                return times[0]
    finally:
        handle.remove()
        proxy.zero_grad(set_to_none=True)
        proxy.eval()
    return float(np.median(times[int(warm_up):]))


@torch.no_grad()
def measure_forward_seconds(proxy: ProxyModel, dataset: Dataset, *, batch: int = 8,
                            device: torch.device | str = "cpu") -> float:
    """Seconds per sample of a plain forward pass (the reference outputs and validation passes); a data set in
    micro-batches (a model that is not batch-major) runs one whole feed at a time. A first sample, or a
    warm-up, slower than SLOW_STEP_S is the measurement (RivaGAN's 256x256 frames: 3.4 s a pass of 8;
    CenterNet at 1024x1024: 4.5 s a sample, 36 s a pass of 8)."""
    idx = np.arange(min(batch, len(dataset)))
    if dataset.micro_batches:
        feeds_list = [dataset.feed(int(i), device) for i in idx]
    else:
        feeds_list = [batch_inputs(dataset, idx, device)]

    def run_all() -> None:
        for feeds in feeds_list:
            proxy.run(feeds)

    start = time.perf_counter()
    proxy.run(feeds_list[0] if dataset.micro_batches else batch_inputs(dataset, idx[:1], device))
    _sync(device)
    one = time.perf_counter() - start
    if one >= SLOW_STEP_S:  # one sample this slow is the measurement (an over-estimate): a batch would cost more
        return one
    start = time.perf_counter()
    run_all()  # warm-up
    _sync(device)
    warm = time.perf_counter() - start
    if warm >= SLOW_STEP_S:  # slow enough that allocations are a small share: three more would cost the budget
        return warm / len(idx)
    times = []
    for _ in range(TIMED_REPEATS + 1):
        _sync(device)
        start = time.perf_counter()
        run_all()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / len(idx)
