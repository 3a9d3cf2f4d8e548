"""Distributed search speed: DARP search step time and samples/s in 1 and 2 (or more) processes.

Each count of processes runs the search as `prune` does (Taylor start, BatchNorm re-inserted and
synchronised over the ranks) through the same launcher as `prune --nproc N` (gloo on CPU, NCCL and
one GPU per rank on CUDA). The per-rank batch is fixed, so the global batch grows with the processes
(as with torchrun); step time is the median gap between search steps after the first two, on rank 0.

Run from the repository root: `python -m benchmarks.distributed [--model resnet] [--nproc 1 2] [--steps 12]
[--batch 16] [--device auto]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def worker(args: argparse.Namespace) -> None:
    """One rank: the search on synthetic data, distillation loss; rank 0 writes its step times."""
    import torch

    from darp_onnx.cost import CostModel
    from darp_onnx.groups import analyse
    from darp_onnx.load.input_shapes import resolve_input_shapes
    from darp_onnx.load.io import load_model
    from darp_onnx.proxy import build_proxy
    from darp_onnx.runtime import distributed
    from darp_onnx.search import DarpConfig, make_budget
    from darp_onnx.search.loss import TaskLoss
    from darp_onnx.search.taylor import run_darp
    from darp_onnx.training.dataset import synthetic_dataset
    from darp_onnx.training.steps import predict

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    distributed.init(device=device)
    torch_device = f"cuda:{distributed.local_rank()}" if device == "cuda" else "cpu"
    model = load_model(SAMPLES / f"{args.model}.onnx")
    shapes = resolve_input_shapes(model, {})
    analysis = analyse(model)
    cost = CostModel(model, analysis, shapes)
    data = synthetic_dataset(model, samples=max(64, 4 * args.batch * distributed.world_size()), seed=0,
                             shapes=shapes)
    proxy = build_proxy(model).to(torch_device)
    proxy.eval()
    loss = TaskLoss(teacher=predict(proxy, data, device=torch_device))
    stamps: list[float] = []
    config = DarpConfig(steps=args.steps, batch_size=args.batch, seed=0)
    run_darp(proxy, analysis, cost, make_budget(cost, metric="macs", value=0.5), data, loss, config,
             device=torch_device, on_step=lambda _record: stamps.append(time.perf_counter()))
    if distributed.is_main():
        gaps = [b - a for a, b in zip(stamps[2:], stamps[3:], strict=False)]
        Path(args.out).write_text(json.dumps({"step_s": statistics.median(gaps), "steps": len(gaps)}))
    distributed.barrier()
    distributed.shutdown()


def measure(args: argparse.Namespace, nproc: int) -> dict:
    from darp_onnx.cli.launch import spawn

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        command = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--model", args.model,
                   "--steps", str(args.steps), "--batch", str(args.batch), "--device", args.device, "--out", str(out)]
        env = None if args.threads is None else {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        code = spawn(nproc, command, env=env)
        if code != 0:
            raise SystemExit(f"{nproc} process(es): the run failed with exit code {code}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12, help="search steps (Taylor start included)")
    parser.add_argument("--batch", type=int, default=16, help="per-rank batch")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: the cores shared out, as `prune --nproc` does; "
                             "1 compares equal threads per rank)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    table = Table(title=f"DARP search on {args.model}, per-rank batch {args.batch}, device {args.device}",
                  title_justify="left")
    for column in ("processes", "threads/process", "global batch", "step ms (median)", "samples/s", "speed-up"):
        table.add_column(column, justify="right")
    base = None
    for nproc in args.nproc:
        step_s = measure(args, nproc)["step_s"]
        rate = nproc * args.batch / step_s
        base = base or rate
        threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // nproc)
        table.add_row(str(nproc), str(threads), str(nproc * args.batch), f"{1000 * step_s:.1f}", f"{rate:.1f}",
                      f"{rate / base:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
