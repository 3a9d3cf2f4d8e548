"""Real third-party models: prune every model of the corpus (benchmarks/real_models.toml, fetched by
scripts/fetch_real_models.sh) at 0.7 and 0.5 of its MACs, data-free, and print one row per model and
budget: status, MACs before/after (recounted from the shapes onnxruntime observes, not from the cost
model), share of channels prunable, output relative error (on one synthetic sample, and on real photos
prepared as the model's package prepares pictures, `preprocess` in the manifest), seconds per stage,
onnxruntime CPU latency before/after (one thread, min of --runs interleaved runs, on one sample: smooth
pictures for image inputs, `--feeds`) and speedup x MACs ratio (1.0: the speedup the MACs cut promises).

A row is 'pruned' when the written model runs in onnxruntime with the same output names and shapes,
has fewer MACs by the independent count and passed prune's checks (equivalence with the masked proxy
included); 'refused' when prune said why in one line (a DarpError); 'CRASH' when anything else
escaped (a traceback: a bug). Seconds per stage: prep (load, ingest, analysis, cost model, reference
outputs) / search (with extraction) / finetune / rewrite / validation (with write). Small search
settings keep the corpus affordable: --steps 10
--finetune-steps 3 --batch-size 4 --samples 8 by default.

    python -m benchmarks.real_models [--models a,b] [--budgets 0.7,0.5] [--steps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from pathlib import Path

import numpy as np
import onnx

import darp_onnx
from benchmarks.corpus import CorpusModel, load_manifest, model_path, photos_dir
from darp_onnx.cost.count import MAC_OPS, node_macs
from darp_onnx.errors import DarpError, ValidationFailedError, first_line
from darp_onnx.load.input_shapes import parse_input_shapes, resolve_input_shapes
from darp_onnx.load.inputs import synthetic_inputs, with_smooth_images
from darp_onnx.load.io import load_model
from darp_onnx.load.observed import observe_shapes
from darp_onnx.runtime.session import make_session
from darp_onnx.runtime.timer import min_interleaved_ms
from darp_onnx.training.dataset import load_dataset
from darp_onnx.workflows.advice import check_drift, check_signal
from darp_onnx.workflows.config import NO_SIGNAL_DRIFT


def observed_macs(model: onnx.ModelProto, feeds, shapes) -> int:
    """MACs of the Conv/ConvTranspose/Gemm/MatMul nodes at the shapes onnxruntime observes."""
    seen = observe_shapes(model, feeds, shapes)
    seen.update({t.name: tuple(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type in MAC_OPS:
            macs = node_macs(node, seen)
            if macs is None:
                raise ValueError(f"node '{node.name}': shapes not observed")
            total += macs
    return total


def benchmark_feeds(model: onnx.ModelProto, shapes, kind: str, seed: int = 1) -> dict[str, np.ndarray]:
    """One sample for the counts, the error and the timing. 'image': 4-D float inputs get `smooth_image`;
    on random-normal pixels some kernels run slower than on any real input (onnxruntime's PRelu: up to 15x,
    it branches on each value's sign), which would mistime the models that use them."""
    feeds = synthetic_inputs(model, batch=1, seed=seed, shapes=shapes)
    return with_smooth_images(feeds, seed) if kind == "image" else feeds


def photo_error(entry: CorpusModel, original: onnx.ModelProto, sessions, shapes, count: int) -> float | None:
    """The largest output's relative error over `count` photos (one feed each) prepared the way the model's
    package prepares pictures; None for models that take no pictures or when no photos were fetched."""
    folder = photos_dir()
    if not entry.preprocess or not folder.is_dir():
        return None
    photos = load_dataset(folder, original, preprocess=entry.preprocess, input_shapes=shapes, max_samples=count)
    name, samples = next(iter(photos.inputs.items()))
    before, after = ([s.run(None, {name: samples[i : i + 1]}) for i in range(len(samples))] for s in sessions)
    stacked = [[np.concatenate([np.ravel(run[k]) for run in runs]) for k in range(len(runs[0]))]
               for runs in (before, after)]
    return rel_error(*stacked)


def rel_error(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    worst = 0.0
    for b, a in zip(before, after, strict=True):
        b, a = np.asarray(b, np.float64), np.asarray(a, np.float64)
        worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)))
    return worst


GROUPED_STAGES = {"prep": ("load", "ingest", "analysis", "shapes", "latency_table", "reference_outputs"),
                  "search": ("search", "extraction"), "finetune": ("finetune",), "rewrite": ("rewrite",),
                  "validate": ("validation", "write")}


def stage_seconds(timings) -> dict[str, float]:
    """prune's stage timings grouped for one column (every stage is in the --json rows)."""
    return {group: sum(timings.get(s, 0.0) for s in stages) for group, stages in GROUPED_STAGES.items()}


def _channels_prunable(result) -> float:
    rows = [g for g in result.groups if g["kind"] != "branch"]
    total = sum(g["size"] for g in rows)
    return sum(g["size"] for g in rows if g["frozen"] is None) / total if total else 0.0


def default_gate(result) -> str | None:
    """Why prune's default --max-drift would refuse this result (the benchmark runs with it off), or None."""
    fid = result.validation.fidelity
    try:
        check_drift(fid.relative_error, NO_SIGNAL_DRIFT, result.input, synthetic=True)
        check_signal(fid, NO_SIGNAL_DRIFT, result.input, synthetic=True)
    except ValidationFailedError as exc:
        return first_line(exc)
    return None


def prune_row(entry: CorpusModel, budget: float, args, workdir: Path) -> dict:
    path = model_path(entry)
    row = {"model": entry.name, "exporter": entry.exporter, "budget": budget, "expect": entry.expect}
    if not path.exists():
        return {**row, "status": "missing", "reason": "not fetched (scripts/fetch_real_models.sh)"}
    out = workdir / f"{entry.name}.{budget}.onnx"
    try:
        original = load_model(path)
        shapes = resolve_input_shapes(original, parse_input_shapes(entry.input_shapes))
        result = darp_onnx.prune(path, output=out, force=True, target_flops=budget, input_shapes=shapes,
                                 search_steps=args.steps, finetune_steps=args.finetune_steps,
                                 batch_size=args.batch_size, synthetic_samples=args.samples, latency_runs=3,
                                 max_drift="off")  # 10 + 3 steps measure the rewrite and speed; relerr shows the fit
    except DarpError as exc:
        return {**row, "status": "refused", "reason": f"[{getattr(exc, 'stage', None) or 'input'}] {first_line(exc)}"}
    except Exception as exc:  # a traceback: the failure class the issue forbids
        return {**row, "status": "CRASH", "reason": f"{type(exc).__name__}: {first_line(exc)}",
                "traceback": traceback.format_exc(limit=-4)}
    row["timings"] = dict(result.timings)
    row["gate"] = default_gate(result)
    row["seconds"] = stage_seconds(result.timings)
    row["prunable"] = _channels_prunable(result)
    pruned = onnx.load(str(out))
    feeds = benchmark_feeds(original, shapes, args.feeds)
    row["macs_before"] = observed_macs(original, feeds, shapes)
    row["macs_after"] = observed_macs(pruned, feeds, shapes)
    s_before, s_after = make_session(original, "cpu", threads=1), make_session(pruned, "cpu", threads=1)
    before, after = s_before.run(None, feeds), s_after.run(None, feeds)
    same_io = ([o.name for o in s_before.get_outputs()] == [o.name for o in s_after.get_outputs()]
               and [b.shape for b in before] == [a.shape for a in after])
    row["rel_error"] = rel_error(before, after)
    row["photo_error"] = photo_error(entry, original, (s_before, s_after), shapes, args.photos)
    row["latency_before"], row["latency_after"] = min_interleaved_ms([s_before, s_after], feeds, runs=args.runs)
    ratio = row["macs_after"] / max(row["macs_before"], 1)
    row["speedup_x_macs"] = row["latency_before"] / row["latency_after"] * ratio
    fewer = row["macs_after"] < row["macs_before"]
    row["status"] = "pruned" if same_io and fewer else "FAILED"
    row["reason"] = "" if row["status"] == "pruned" else ("outputs differ in name/shape" if not same_io
                                                          else "no fewer MACs by the observed count")
    return row


def _fmt(row: dict) -> str:
    if row["status"] not in ("pruned", "FAILED"):
        return f"{row['model']:26s} {row['budget']:4.2f} {row['status']:8s} {row['reason'][:150]}"
    sec = row["seconds"]
    stages = "/".join(f"{sec[k]:.0f}" for k in GROUPED_STAGES)
    photo = "-" if row.get("photo_error") is None else f"{row['photo_error']:.3f}"
    return (f"{row['model']:26s} {row['budget']:4.2f} {row['status']:8s} {row['macs_before'] / 1e6:9.1f} "
            f"{row['macs_after'] / 1e6:9.1f} {row['macs_after'] / row['macs_before']:6.1%} {row['prunable']:6.1%} "
            f"{row['rel_error']:8.3f} {photo:>7s} {stages:>21s} {row['latency_before']:8.2f} "
            f"{row['latency_after']:8.2f} "
            f"{row['speedup_x_macs']:6.2f} {row['reason']}")


HEADER = (f"{'model':26s} {'bud':4s} {'status':8s} {'MMACs':>9s} {'->MMACs':>9s} {'ratio':>6s} {'prun%':>6s} "
          f"{'relerr':>8s} {'photos':>7s} {'s prep/srch/ft/rw/val':>21s} {'ms bef':>8s} {'ms aft':>8s} {'spd*r':>6s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated corpus names (default: all)")
    parser.add_argument("--budgets", default="0.7,0.5")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--finetune-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20, help="latency runs, taking turns (min reported)")
    parser.add_argument("--feeds", choices=("image", "normal"), default="image",
                        help="the timed sample: 4-D float inputs as smooth pictures (image) or random normal")
    parser.add_argument("--photos", type=int, default=8,
                        help="photos the 'photos' error column runs (from $DARP_ONNX_PHOTOS, fetched with the corpus)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    wanted = {m for m in args.models.split(",") if m}
    corpus = [m for m in load_manifest() if not wanted or m.name in wanted]
    budgets = [float(b) for b in args.budgets.split(",")]
    rows = []
    print(f"settings: --steps {args.steps} --finetune-steps {args.finetune_steps} --batch-size {args.batch_size} "
          f"--samples {args.samples}, data-free; latency: onnxruntime CPU, 1 thread, "
          f"min of {args.runs} interleaved runs, {args.feeds} feeds")
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for entry in corpus:
            for budget in budgets:
                row = prune_row(entry, budget, args, Path(tmp))
                rows.append(row)
                print(_fmt(row), flush=True)
                if row["status"] == "CRASH":
                    print(row["traceback"], flush=True)
    by_model: dict[str, set[str]] = {}
    for row in rows:
        by_model.setdefault(row["model"], set()).add(row["status"])
    pruned = sum(1 for s in by_model.values() if "pruned" in s)
    crashes = sum(1 for r in rows if r["status"] == "CRASH")
    print(f"models: {len(by_model)}; pruned at some budget: {pruned} ({pruned / max(len(by_model), 1):.0%}); "
          f"rows refused: {sum(1 for r in rows if r['status'] == 'refused')}; tracebacks: {crashes}; "
          f"rows prune's default --max-drift would refuse (no signal kept on its synthetic samples: error over "
          f"{NO_SIGNAL_DRIFT}, no positives, or an output constant): {sum(1 for r in rows if r.get('gate'))}")
    for row in rows:
        if row.get("gate"):
            print(f"  gate: {row['model']} {row['budget']:.2f}: {row['gate'][:160]}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
