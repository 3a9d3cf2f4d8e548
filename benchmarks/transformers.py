"""Transformers: the ViT and the BERT-style text encoder samples pruned to 50% and 25% of their MACs.

Three methods, each the same total training steps (`--search-share` of them searching for darp) and the
same recovery recipe as benchmarks/quality.py (whose prune helper this uses):
  full  darp over every unit kind the analysis finds (attention heads, FFN neurons, whole attention and
        FFN branches, other channels);
  ffn   darp with heads and branches kept (`keep_kinds=("head", "branch")`): FFN neurons (and any other
        channel group) only;
  l1    the l1 baseline over every unit kind.
Accuracy is onnxruntime's on the held-out split (ViT: digits 0-4 test split; text encoder: sentiment test
split), mean±std over seeds. Latency: onnxruntime CPU, the first seed's pruned model of each cell against
the original, interleaved (darp_onnx.runtime.timer), next to the MACs ratio.
Goals (issue 16): at 50% MACs, speedup >= 0.8x 1/(MACs ratio) and accuracy within 1 point of the full model.

Run from the repository root: `python -m benchmarks.transformers [--models vit textenc] [--budgets 0.5 0.25]
[--seeds 0 1 2 3 4] [--steps 200] [--methods full ffn l1] [--latency-batch 1] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnx
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.quality import mean_std, onnx_accuracy, prune_onnx
from benchmarks.speedup import session
from darp_onnx.errors import BadInputError
from darp_onnx.groups.units import UNIT_KINDS
from darp_onnx.load.io import load_model
from darp_onnx.runtime.timer import min_interleaved_ms
from darp_onnx.training.dataset import load_dataset

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODELS = {  # name -> (file, data); textenc_ts: the same text encoder from the TorchScript exporter
    "vit": ("vit.onnx", "data/digits_source.npz"),
    "textenc": ("textenc.onnx", "data/sentiment.npz"),
    "textenc_ts": ("textenc_ts.onnx", "data/sentiment.npz"),
}
METHODS = {"full": ("darp", ()), "ffn": ("darp", ("head", "branch")), "l1": ("l1", ())}


def keep_kinds(method: str, notes: set[str]) -> tuple[str, ...]:
    """The method's kept unit kinds that this version registers (an unknown kind has no units to keep)."""
    wanted = METHODS[method][1]
    missing = [k for k in wanted if k not in UNIT_KINDS]
    if missing:
        notes.add(f"{method}: unit kind(s) {', '.join(missing)} not registered in this version (nothing of that "
                  f"kind is prunable, so nothing to keep)")
    return tuple(k for k in wanted if k in UNIT_KINDS)


def kept_by_kind(groups: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """kind -> (units kept, units prunable), over the groups the search could prune."""
    kept: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g in groups:
        if g["frozen"] is None:
            kept[g["kind"]][0] += g["kept"]
            kept[g["kind"]][1] += g["size"]
    return {k: (v[0], v[1]) for k, v in sorted(kept.items())}


def prunable_summary(groups: list[dict[str, Any]]) -> str:
    """What the analysis lets the search prune: units (groups) per kind, and the frozen group count."""
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g in groups:
        if g["frozen"] is None:
            per_kind[g["kind"]][0] += g["size"]
            per_kind[g["kind"]][1] += 1
    frozen = sum(1 for g in groups if g["frozen"] is not None)
    kinds = ", ".join(f"{k} {u} units in {n} groups" for k, (u, n) in sorted(per_kind.items()))
    return f"prunable: {kinds or 'nothing'}; {frozen} groups frozen"


def run_model(name: str, args, console: Console, notes: set[str]) -> tuple[list[dict], float, str]:
    """Every budget, method and seed on one model; then the first seed's pruned models timed."""
    file, data = MODELS[name]
    model = load_model(SAMPLES / file)
    train = load_dataset(SAMPLES / data, model, split="train")
    test = load_dataset(SAMPLES / data, model, split="test")
    full_accuracy = onnx_accuracy(model, test)
    rows, timed, summary = [], [], ""
    for budget in args.budgets:
        for method in args.methods:
            algorithm = METHODS[method][0]
            options = {"keep_kinds": keep_kinds(method, notes)}
            for index, seed in enumerate(args.seeds):
                try:
                    result, seconds = prune_onnx(model, algorithm, budget, args.steps, train, args, seed, **options)
                except BadInputError as exc:  # e.g. a budget below what the kept kinds cost: a result, printed
                    rows.append({"model": name, "budget": budget, "method": method, "unreachable": str(exc)})
                    console.log(f"{name} {budget:g} {method}: {exc}")
                    break
                row = {"model": name, "budget": budget, "method": method, "seed": seed, "seconds": seconds,
                       "accuracy": onnx_accuracy(result.model, test),
                       "macs_kept": result.flops_after / result.flops_before,
                       "params_kept": result.params_after / result.params_before,
                       "kept": kept_by_kind(result.groups)}
                if method == "full" and not summary:
                    summary = prunable_summary(result.groups)
                if index == 0:
                    timed.append((row, result.model))
                rows.append(row)
                console.log(f"{name} {budget:g} {method} seed {seed}: accuracy {row['accuracy']:.4f}, MACs kept "
                            f"{row['macs_kept']:.3f}, {seconds:.0f} s")
    time_pruned(model, [t[1] for t in timed], [t[0] for t in timed], test, args)
    return rows, full_accuracy, summary


def time_pruned(model: onnx.ModelProto, pruned: list[onnx.ModelProto], rows: list[dict], test, args) -> None:
    """onnxruntime latency of the original and every pruned model, taking turns; speedup into `rows`."""
    feeds = {k: v[: args.latency_batch] for k, v in test.inputs.items()}
    sessions = [session(m, args.threads) for m in (model, *pruned)]
    times = min_interleaved_ms(sessions, feeds, runs=args.runs)
    for row, ms in zip(rows, times[1:], strict=True):
        row.update(original_ms=times[0], pruned_ms=ms, speedup=times[0] / ms)
        row["efficiency"] = row["speedup"] * row["macs_kept"]


def kept_text(rows: list[dict]) -> str:
    kept = rows[0]["kept"]
    return ", ".join(f"{k} {statistics.mean(r['kept'][k][0] for r in rows):.0f}/{total}"
                     for k, (_, total) in kept.items()) or "-"


def _smallest(message: str) -> str:
    """'smallest reachable NN%' from prune's infeasible-budget message, else its start."""
    found = re.search(r"smallest reachable is [\d,]+ \w+ \(([\d.]+%)\)", message)
    return f"smallest reachable {found.group(1)}" if found else message[:60]


def print_table(console: Console, rows: list[dict], full: dict[str, float], args) -> None:
    table = Table(title=f"transformers: held-out accuracy after pruning to a MACs budget ({args.steps} steps per "
                        f"method, recovery included; mean±std over seeds {' '.join(map(str, args.seeds))}), "
                        f"onnxruntime CPU latency at batch {args.latency_batch} (first seed)")
    for column in ("model (full acc)", "budget", "method", "MACs kept", "params kept", "accuracy",
                   "Δ points", "units kept (mean / prunable)", "speedup", "speedup x MACs ratio"):
        table.add_column(column, justify="right")
    for name in full:
        for budget in args.budgets:
            for method in args.methods:
                cell = [r for r in rows if r["model"] == name and r["budget"] == budget and r["method"] == method]
                if cell and "unreachable" in cell[0]:
                    table.add_row(f"{name} ({full[name]:.4f})", f"{budget:g}", method, "unreachable", "-", "-", "-",
                                  _smallest(cell[0]["unreachable"]), "-", "-")
                    continue
                accs = [r["accuracy"] for r in cell]
                timed = next(r for r in cell if "speedup" in r)
                table.add_row(f"{name} ({full[name]:.4f})", f"{budget:g}", method,
                              f"{statistics.mean(r['macs_kept'] for r in cell):.3f}",
                              f"{statistics.mean(r['params_kept'] for r in cell):.3f}", mean_std(accs),
                              f"{100 * (statistics.mean(accs) - full[name]):+.1f}", kept_text(cell),
                              f"{timed['speedup']:.2f}x", f"{timed['efficiency']:.2f}")
    console.print(table)


def verdicts(console: Console, rows: list[dict], full: dict[str, float], args) -> None:
    """The issue's goals at the 50% budget, per model and method."""
    for name in full:
        for method in args.methods:
            cell = [r for r in rows if r["model"] == name and r["budget"] == 0.5 and r["method"] == method]
            if not cell or "unreachable" in cell[0]:
                if cell:
                    console.print(f"  {name} {method} at 50%: unreachable ({_smallest(cell[0]['unreachable'])})",
                                  markup=False)
                continue
            drop = 100 * (full[name] - statistics.mean(r["accuracy"] for r in cell))
            efficiency = next(r for r in cell if "speedup" in r)["efficiency"]
            console.print(f"  {name} {method} at 50%: accuracy drop {drop:.2f} points "
                          f"({'meets' if drop <= 1.0 else 'MISSES'} <= 1), speedup x MACs ratio {efficiency:.2f} "
                          f"({'meets' if efficiency >= 0.8 else 'MISSES'} >= 0.8)", markup=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit", "textenc"], choices=list(MODELS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.25], help="MACs fractions to keep")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=200, help="training steps per method (search + recovery)")
    parser.add_argument("--search-share", type=float, default=0.5, help="share of the steps darp spends searching")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="recovery learning rate (default: prune()'s)")
    parser.add_argument("--channel-multiple", default="auto", help="prune's --channel-multiple")
    parser.add_argument("--latency-aware", action="store_true", help="prune with latency_aware=True")
    parser.add_argument("--latency-batch", type=int, default=1, help="batch of the timed onnxruntime runs")
    parser.add_argument("--runs", type=int, default=60, help="timed runs per model, taking turns (min taken)")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=220)
    notes: set[str] = set()
    started = time.perf_counter()
    rows, full, summaries = [], {}, {}
    for name in args.models:
        model_rows, full[name], summaries[name] = run_model(name, args, console, notes)
        rows += model_rows
    print_table(console, rows, full, args)
    for name, summary in summaries.items():
        console.print(f"- {name}: {summary or 'no full-method run'}", markup=False)
    for note in sorted(notes):
        console.print(f"- {note}", markup=False)
    console.print(f"- CPU, {args.threads} thread(s); darp searches {args.search_share:g} of the steps; batch "
                  f"{args.batch_size}; channel multiple {args.channel_multiple}; goals at the 50% budget:",
                  markup=False)
    verdicts(console, rows, full, args)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s (shared, loaded machine)", markup=False)
    if args.json:
        args.json.write_text(json.dumps({"full": full, "prunable": summaries, "runs": rows,
                                         "notes": sorted(notes)}, indent=1))


if __name__ == "__main__":
    main()
