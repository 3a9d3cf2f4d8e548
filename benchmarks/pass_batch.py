"""Per-sample cost of a pass over the data at several batch sizes: the proxy (torch, outputs only) and
onnxruntime, on the corpus models (benchmarks/real_models.toml) at their corpus input sizes, random inputs.

It chose `training.steps.CPU_PASS_BATCH` and `validation.checks.CPU_RUN_BATCH`: on a CPU, the per-sample cost
grows with the batch once activations leave the caches, so passes at batch 128 (proxy) and 64 (onnxruntime)
cost up to 4x those at small batches.

    OMP_NUM_THREADS=1 python -m benchmarks.pass_batch [--models a,b] [--samples 64] [--batches 1,8,32,64,128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.corpus import load_manifest, model_path
from darp_onnx.load.input_shapes import parse_input_shapes, resolve_input_shapes
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.io import load_model
from darp_onnx.proxy.model import build_proxy
from darp_onnx.runtime.session import make_session


def _per_sample_ms(run, feeds: dict[str, np.ndarray], batch: int) -> float:
    total = len(next(iter(feeds.values())))
    run({k: v[:batch] for k, v in feeds.items()})  # warm-up at this size
    start = time.perf_counter()
    for first in range(0, total, batch):
        run({k: v[first:first + batch] for k, v in feeds.items()})
    return 1e3 * (time.perf_counter() - start) / total


def _row(entry, samples: int, batches: list[int]) -> str:
    path = model_path(entry)
    model = load_model(path)
    shapes = resolve_input_shapes(model, parse_input_shapes(entry.input_shapes))
    if any(dims[0] != 1 for dims in shapes.values()):
        return f"{entry.name:<26} skipped: first axis is not a batch of 1"
    feeds = synthetic_inputs(model, seed=0, shapes={k: (samples, *dims[1:]) for k, dims in shapes.items()})
    proxy = build_proxy(model)
    proxy.eval()
    session = make_session(model, "cpu", threads=1)

    def torch_run(f):
        with torch.no_grad():
            proxy.run({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()})

    def ort_run(f):
        session.run(None, f)

    try:
        cells = [f"{_per_sample_ms(torch_run, feeds, b):.1f}/{_per_sample_ms(ort_run, feeds, b):.1f}" for b in batches]
    except Exception as exc:  # noqa: BLE001 - a model whose graph fixes the batch: said in the row
        return f"{entry.name:<26} skipped: does not run batched ({type(exc).__name__})"
    return f"{entry.name:<26} " + " ".join(f"{c:>13}" for c in cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated corpus names (default: all image models)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batches", default="1,8,32,64,128")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batches.split(",")]
    wanted = {m for m in args.models.split(",") if m}
    entries = [e for e in load_manifest() if (e.name in wanted if wanted else e.expect == "prune")]
    print(f"ms per sample, proxy (torch) / onnxruntime, 1 thread, {args.samples} random samples at the corpus sizes")
    print(f"{'model':<26} " + " ".join(f"{'batch ' + str(b):>13}" for b in batches))
    for entry in entries:
        if not model_path(entry).exists():
            print(f"{entry.name:<26} missing: run scripts/fetch_real_models.sh")
            continue
        try:
            print(_row(entry, args.samples, batches), flush=True)
        except Exception as exc:  # noqa: BLE001 - one model's failure does not end the table
            print(f"{entry.name:<26} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")


if __name__ == "__main__":
    main()
