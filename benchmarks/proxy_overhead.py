"""Proxy overhead: median forward+backward step time of the ONNX proxy over the hand-written torch
module it was exported from (same weights, same batch, CPU). Goal: ratio <= 1.15.

Run from the repository root: `python -m benchmarks.proxy_overhead [--batch 32] [--repeats 30]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.fx.experimental.optimization import fuse

from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from sample_models.architectures import load_trained

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODELS = ("resnet", "mobilenetv3", "yolov8", "vit")


def step_times(module: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int = 5) -> list[float]:
    """Seconds per forward + backward of `out.sum()`, parameters' grads cleared each time."""
    times = []
    for i in range(warmup + repeats):
        module.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = module(x)
        out.sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def folded(module: torch.nn.Module) -> torch.nn.Module | None:
    """The module with BatchNorm folded into the convolutions, as the ONNX exporter does (None when
    torch.fx cannot trace it)."""
    try:
        return fuse(module)
    except Exception:  # noqa: BLE001  (fx raises several error types on untraceable code)
        return None


def measure(name: str, batch: int, repeats: int) -> dict[str, float]:
    reference = load_trained(name).eval()
    reference_folded = folded(load_trained(name).eval())
    proxy = build_proxy(load_model(SAMPLES / f"{name}.onnx")).eval()
    x = torch.randn(batch, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((proxy(x) - reference(x)).abs().max())
    # interleave the two so machine noise hits both alike
    ref_t, folded_t, proxy_t = [], [], []
    for _ in range(3):
        ref_t += step_times(reference, x, repeats // 3 or 1)
        if reference_folded is not None:
            folded_t += step_times(reference_folded, x, repeats // 3 or 1)
        proxy_t += step_times(proxy, x, repeats // 3 or 1)
    ref_ms, proxy_ms = statistics.median(ref_t) * 1e3, statistics.median(proxy_t) * 1e3
    folded_ms = statistics.median(folded_t) * 1e3 if folded_t else float("nan")
    return {"torch_ms": ref_ms, "folded_ms": folded_ms, "proxy_ms": proxy_ms, "ratio": proxy_ms / ref_ms,
            "ratio_folded": proxy_ms / folded_ms, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = Table(title=f"proxy overhead, forward+backward, batch {args.batch}, CPU, {torch.get_num_threads()} threads")
    columns = ("model", "torch ms", "torch, BN folded ms", "proxy ms", "proxy / torch (goal <= 1.15)",
               "proxy / folded", "max |proxy - torch|")
    for column in columns:
        table.add_column(column, justify="right")
    for name in MODELS:
        r = measure(name, args.batch, args.repeats)
        table.add_row(name, f"{r['torch_ms']:.2f}", f"{r['folded_ms']:.2f}", f"{r['proxy_ms']:.2f}",
                      f"{r['ratio']:.3f}", f"{r['ratio_folded']:.3f}", f"{r['max_abs_diff']:.2e}")
    Console().print(table)
    Console().print("The ONNX graphs have BatchNorm folded into the convolutions (the exporter's optimizer), so "
                    "'proxy / folded' compares like with like; nan: torch.fx cannot trace that model.")


if __name__ == "__main__":
    main()
