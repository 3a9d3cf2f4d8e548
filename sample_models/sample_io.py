"""What both sample generators (images: make_samples.py, text: text_samples.py) write the same way."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import onnx
import torch

MAX_IR_VERSION = 10  # onnxruntime 1.31 loads IR <= 13; 10 keeps older runtimes happy too


def save_sample(proto: onnx.ModelProto, path: Path) -> None:
    """Writes `proto` as one self-contained file at an IR version older runtimes load."""
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measured_fields(summary: dict, torch_acc: float, model: torch.nn.Module, opset: int, exporter: str) -> dict:
    """The manifest fields every sample records from its verification and export."""
    return {
        "onnx_test_accuracy": round(summary["onnx_test_accuracy"], 4),
        "torch_test_accuracy": round(torch_acc, 4),
        "max_abs_diff_vs_torch": float(f"{summary['max_abs_diff_vs_torch']:.2e}"),
        "params": sum(p.numel() for p in model.parameters()),
        "opset": opset,
        "ir_version": summary["ir_version"],
        "exporter": f"{exporter} torch {torch.__version__.split('+')[0]}",
    }


def train_one_cycle(model: torch.nn.Module, opt: torch.optim.Optimizer, *, epochs: int, rows: int, batch: int,
                    pct_start: float, gen: torch.Generator, loss_of) -> float:
    """Epochs of shuffled mini-batches (`loss_of(indices)` gives a batch's loss) under a one-cycle schedule
    peaking at the optimizer's learning rate; returns the wall time in seconds."""
    steps = epochs * ((rows + batch - 1) // batch)
    max_lr = opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=pct_start)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(rows, generator=gen)
        for i in range(0, rows, batch):
            loss = loss_of(perm[i : i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return time.perf_counter() - start
