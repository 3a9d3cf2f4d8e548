"""Speedup: onnxruntime CPU latency of the sample CNN architectures at 224x224 (random weights), pruned
by the L1 baseline to 75/50/25% of their MACs, next to the MACs ratio.
Goal: at 50% MACs, speedup >= 0.8x the ideal 1/(MACs ratio), i.e. speedup x MACs ratio >= 0.8.

Three extractions of the same L1 scores per budget: 'NN%' (rank order, any width), 'NN% xM' (rank
order, widths at multiples of M) and 'NN% lat xM' (latency-aware: `prune --latency-aware`, layers
timed on this CPU, widths at multiples of M; 'lat wW': the same with `--latency-weight W`, which
prefers faster candidates over kept importance). M defaults to what onnxruntime's kernels want here.

Run from the repository root: `python -m benchmarks.speedup [--models resnet,mobilenetv3,yolov8]
[--budgets 0.75,0.5,0.25] [--size 224] [--threads 1] [--runs 30] [--seed 0] [--channel-multiple auto]
[--latency-budgets] [--exporter both|dynamo|torchscript]` (--latency-budgets adds rows pruned to a latency
budget, `prune --target-latency`). Each CNN is exported with both torch exporters by default; every row
names its exporter and a failed export is printed (the dynamo exporter needs onnxscript), never replaced.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from darp_onnx.cost import count_graph
from darp_onnx.errors import BadInputError
from darp_onnx.runtime.timer import min_interleaved_ms
from darp_onnx.workflows.config import BudgetConfig, ExtractionConfig, prune_config
from darp_onnx.workflows.prune import analyse_costs, budget_for, extract, load, rewrite_model, score
from sample_models.architectures import build

MAX_IR_VERSION = 10  # what onnxruntime reads
CNNS = ("resnet", "mobilenetv3", "yolov8")
NOTES: list[str] = []  # budgets that could not be met, printed under the table


EXPORTERS = ("dynamo", "torchscript")


def export(name: str, size: int, seed: int, path: Path, exporter: str) -> str:
    """Export a randomly initialised `build(name)` in eval mode at 1x1xSIZExSIZE with `exporter` ('dynamo':
    opset 18, needs onnxscript; 'torchscript': opset 17); returns its label. No fallback: a failed export
    raises, and the caller says so."""
    torch.manual_seed(seed)
    model = build(name).eval()
    x = torch.randn(1, 1, size, size)
    kwargs = {"input_names": ["input"], "output_names": ["logits"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, external_data=False,
                                        verbose=False, **kwargs)
            proto, used = program.model_proto, "dynamo, opset 18"
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, **kwargs)
            proto, used = onnx.load(str(path)), "torchscript, opset 17"
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return used


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure(name: str, budgets: list[float], args, workdir: Path, exporter: str) -> list[dict]:
    """The prune stages (load, analyse_costs, score, extract, rewrite_model) with the L1 baseline and
    several extraction options per budget; then every variant timed in one interleaved round."""
    path = workdir / f"{name}_{args.size}_{exporter}.onnx"
    exporter = export(name, args.size, args.seed, path, exporter)
    shapes = {"input": (1, 1, args.size, args.size)}
    config = prune_config(method="l1", write=False, input_shapes=shapes, channel_multiple=args.channel_multiple,
                          latency_aware=True, device="cpu", seed=args.seed)
    config = replace(config, extraction=replace(config.extraction, latency_threads=args.threads))
    run = analyse_costs(load(path, config))  # the layer timings come with it (latency_aware)
    model, cost, multiple = run.model, run.cost_model, run.channel_multiple
    scores = score(run)
    feeds = {"input": np.random.default_rng(args.seed).standard_normal((1, 1, args.size, args.size),
                                                                       dtype=np.float32)}
    original = session(model, args.threads)
    (reference,) = original.run(None, feeds)
    rows, sessions = [], [original]
    variants = []
    plain = ExtractionConfig(channel_multiple=1)
    rounded = ExtractionConfig(channel_multiple=multiple)
    aware = replace(rounded, latency_aware=True, latency_threads=args.threads)

    def extracted(budget: BudgetConfig, options: ExtractionConfig):
        return extract(run, scores, budget=budget_for(run, budget), options=options).masks

    for fraction in budgets:
        by_macs = BudgetConfig("macs", fraction)
        variants.append((fraction, f"{fraction:.0%}", extracted(by_macs, plain)))
        if multiple > 1:
            variants.append((fraction, f"{fraction:.0%} x{multiple}", extracted(by_macs, rounded)))
        variants.append((fraction, f"{fraction:.0%} lat x{multiple}", extracted(by_macs, aware)))
        if args.latency_weight != 1:
            fast = replace(aware, latency_weight=args.latency_weight)
            variants.append((fraction, f"{fraction:.0%} lat w{args.latency_weight:g} x{multiple}",
                             extracted(by_macs, fast)))
        if args.latency_budgets:
            try:
                variants.append((fraction, f"time {fraction:.0%} x{multiple}",
                                 extracted(BudgetConfig("latency", fraction), aware)))
            except BadInputError as exc:
                NOTES.append(f"{name} time {fraction:.0%}: {exc}")
    for fraction, label, masks in variants:
        pruned = rewrite_model(run, masks)
        sess = session(pruned, args.threads)
        (out,) = sess.run(None, feeds)
        counted = count_graph(pruned, shapes)
        ok = (out.shape == reference.shape and bool(np.isfinite(out).all())
              and counted.macs == cost.macs(masks) and counted.params == cost.params(masks))
        sessions.append(sess)
        rows.append({"model": name, "budget": fraction, "label": label,
                     "macs": cost.macs(masks) / cost.full_macs,
                     "params": cost.params(masks) / cost.full_params, "ok": ok, "exporter": exporter,
                     "full_macs": cost.full_macs})
    times = min_interleaved_ms(sessions, feeds, runs=args.runs)
    for row, t in zip(rows, times[1:], strict=True):
        row["orig_ms"], row["pruned_ms"] = times[0], t
        row["speedup"] = times[0] / t
        row["efficiency"] = row["speedup"] * row["macs"]  # speedup / (1 / MACs ratio)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CNNS), help="comma-separated names from sample_models")
    parser.add_argument("--budgets", default="0.75,0.5,0.25", help="MACs fractions to keep, comma-separated")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model, taking turns (min taken)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channel-multiple", default="auto",
                        help="M for the 'xM' rows (kept channel counts at multiples of M, budget still met); "
                             "auto: onnxruntime's kernel block on this CPU")
    parser.add_argument("--latency-weight", type=float, default=4.0,
                        help="also rows 'NN%% lat wW xM': the latency-aware extraction with --latency-weight W "
                             "(speed weighs W times importance when choosing among candidates; 1: no extra rows)")
    parser.add_argument("--latency-budgets", action="store_true",
                        help="also rows 'time NN%% xM': a latency budget (prune --target-latency NN%%) instead of MACs")
    parser.add_argument("--exporter", choices=("both", *EXPORTERS), default="both",
                        help="torch exporter of the sample CNNs: dynamo (opset 18, needs onnxscript), torchscript "
                             "(opset 17) or both (default); a failed export is reported, never replaced")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    torch.set_num_threads(max(1, args.threads))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # exporter notes (torchvision ops skipped...)

    rows = []
    exporters = EXPORTERS if args.exporter == "both" else (args.exporter,)
    failed_exports = []
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in exporters:
            for name in names:
                try:
                    rows += measure(name, budgets, args, Path(tmp), exporter)
                except Exception as exc:  # an export failure is a result: printed, never a silent fallback
                    failed_exports.append(f"{name} with the {exporter} exporter: {type(exc).__name__}: {exc}"[:300])

    table = Table(title=f"onnxruntime CPU latency, L1-pruned, 1x1x{args.size}x{args.size}, random weights, "
                        f"{args.threads} thread(s), min of {args.runs} interleaved runs")
    for column in ("model", "exporter", "target", "MACs kept", "params kept", "original ms", "pruned ms", "speedup",
                   "speedup / (1/MACs ratio)", "GMACs full", "checks"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["model"], r["exporter"], r["label"], f"{r['macs']:.3f}", f"{r['params']:.3f}",
                      f"{r['orig_ms']:.2f}", f"{r['pruned_ms']:.2f}", f"{r['speedup']:.2f}x",
                      f"{r['efficiency']:.2f}", f"{r['full_macs'] / 1e9:.3f}", "ok" if r["ok"] else "FAILED")
    console = Console(width=200)  # wide tables stay whole when stdout is not a terminal
    console.print(table)
    for note in NOTES:
        console.print(f"not reachable: {note}")
    for failure in failed_exports:
        console.print(f"EXPORT FAILED (no rows): {failure}")
    used = sorted({r["exporter"] for r in rows})
    console.print(f"exporters: {', '.join(used) or 'none'}; goal: speedup / (1/MACs ratio) >= 0.8 at the 50% budget")
    for r in rows:
        if r["label"].startswith("time "):
            console.print(f"  {r['model']} {r['label']}: speedup {r['speedup']:.2f}x for an estimated "
                          f"{1 / r['budget']:.2f}x")
        elif abs(r["budget"] - 0.5) < 1e-9:
            verdict = "meets" if r["efficiency"] >= 0.8 else "MISSES"
            console.print(f"  {r['model']} ({r['exporter']}) {r['label']}: {r['efficiency']:.2f} ({verdict})")


if __name__ == "__main__":
    main()
