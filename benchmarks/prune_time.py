"""Prune time: wall seconds per stage and peak memory of `darp-onnx prune` with its defaults.

Each model is pruned by the CLI in a fresh process (`darp-onnx prune MODEL --json`, nothing but the
defaults: half the MACs, synthetic data, the default time budget), so peak RSS is that run's alone. Rows:
the sample models as shipped (32x32, trained), the CNN samples exported at 224x224 with random weights and
a ViT at 224x224 (patch 16), and every model of the real-model corpus (/root/.cache/darp-onnx/models)
when it exists. The last column divides the training seconds by MACs x samples stepped (steps x batch):
if it does not grow with the model's MACs, time grows no faster than linearly in MACs x steps.

Run from the repository root: `python -m benchmarks.prune_time [--sizes 32,224] [--models resnet,vit]
[--corpus DIR] [--time-budget 5m] [--workdir /tmp/darp_prune_time]`
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import onnx
import torch
from rich.console import Console
from rich.table import Table

from darp_onnx.workflows.results import STAGES
from sample_models.architectures import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
CORPUS = Path("/root/.cache/darp-onnx/models")
GOAL_SECONDS = 300.0
SHOWN_STAGES = tuple(stage for stage in STAGES if stage != "write")


def export_224(name: str, size: int, path: Path) -> Path:
    """A random-weight sample architecture at SIZE x SIZE with a dynamic batch (ViT with 16-pixel patches, as
    ViT-B/16)."""
    if path.exists():
        return path
    torch.manual_seed(0)
    model = (ARCHITECTURES["vit"](patch=16, size=size) if name == "vit" else ARCHITECTURES[name]()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (torch.randn(2, 1, size, size),), dynamo=True, opset_version=18,
                                    input_names=["input"], output_names=["logits"], verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("N")},))
    proto = program.model_proto
    proto.ir_version = min(proto.ir_version, 10)
    onnx.save_model(proto, str(path))
    return path


def corpus_models(folder: Path) -> list[tuple[str, Path, tuple[str, ...]]]:
    """The corpus models the ingest list says should prune, with their --input-shape flags."""
    import tomllib

    listing = ROOT / "benchmarks" / "real_models.toml"
    if not listing.exists():
        return [(path.stem, path, ()) for path in sorted(folder.glob("*.onnx"))]
    rows = []
    for entry in tomllib.loads(listing.read_text(encoding="utf-8")).get("model", []):
        path = folder / f"{entry['name']}.onnx"
        if path.exists() and not str(entry.get("expect", "prune")).startswith("refuse"):
            shapes = [s for s in str(entry.get("inputs", "")).split(";") if s]
            rows.append((entry["name"], path, tuple(x for s in shapes for x in ("--input-shape", s))))
    return rows


def models(args) -> list[tuple[str, Path, tuple[str, ...]]]:
    rows = []
    for size in args.sizes:
        for name in args.models:
            if size == 32:
                rows.append((f"{name} 32", SAMPLES / f"{name}.onnx", ()))
            else:
                rows.append((f"{name} {size}", export_224(name, size, args.workdir / f"{name}_{size}.onnx"), ()))
    if args.corpus is not None and args.corpus.is_dir():
        wanted = {m for m in args.only.split(",") if m}
        rows += [r for r in corpus_models(args.corpus) if not wanted or r[0] in wanted]
    return rows


def prune_once(path: Path, args, extra: tuple[str, ...] = ()) -> dict:
    """`darp-onnx prune PATH --json` with defaults in a subprocess (but --max-drift off: time is measured here,
    not the fit); the JSON document or the error."""
    out = args.workdir / f"{path.stem}.pruned.onnx"
    command = [str(Path(sys.executable).with_name("darp-onnx")), "prune", str(path), "-o", str(out), "--force",
               "--json", "--max-drift", "off", *extra]
    command += ["--time-budget", args.time_budget] if args.time_budget else []
    start, cpu_start = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:  # where it was: the last stage line of its progress
        stages = [line for line in _text(exc.stderr).splitlines() if line.strip() and "━" not in line]
        return {"error": f"killed after {args.timeout:.0f} s in: {(stages or ['?'])[-1].strip()[:80]}",
                "wall": time.perf_counter() - start, "cpu": _children_cpu() - cpu_start}
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:100], "wall": wall, "cpu": cpu}
    document = json.loads(done.stdout)
    document["wall"], document["cpu"] = wall, cpu
    return document


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: on a shared, loaded machine the wall time
    counts the other processes' share too; CPU seconds / torch threads is what the run would take alone."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def row(label: str, doc: dict) -> list[str]:
    if "error" in doc:
        return [label, "-", *["" for _ in SHOWN_STAGES], f"{doc['wall']:.0f}", f"{doc.get('cpu', 0):.0f}", "", "",
                "", f"failed: {doc['error']}"]
    timings, resources = doc.get("timings", {}), doc.get("resources", {})
    plan = resources.get("plan", {})
    gmacs = doc["flops_before"] / 1e9
    steps = doc["search_steps"] + doc["finetune_steps"]
    batch = plan.get("batch_size") or 32
    training = timings.get("search", 0.0) + timings.get("finetune", 0.0)
    per_unit = training / max(gmacs * steps * batch, 1e-12)
    ok = "yes" if doc["wall"] <= GOAL_SECONDS else "NO"
    return [label, f"{gmacs:.3f}", *[f"{timings[s]:.1f}" if s in timings else "-" for s in SHOWN_STAGES],
            f"{doc['wall']:.0f}", f"{doc.get('cpu', 0):.0f}", f"{doc['search_steps']}/{doc['finetune_steps']}x{batch}",
            f"{resources.get('peak_rss_mib', float('nan')):.0f}", f"{per_unit:.3f}", ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,224",
                        help="input sizes: 32 (the samples as shipped) and/or 224; '' for none (corpus only)")
    parser.add_argument("--models", default="resnet,mobilenetv3,yolov8,vit")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of real models (skipped if missing)")
    parser.add_argument("--only", default="", help="comma-separated corpus names (default: every one)")
    parser.add_argument("--time-budget", default=None, help="pass --time-budget (default: the CLI's default)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/darp_prune_time"))
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    args.workdir.mkdir(parents=True, exist_ok=True)
    console = Console(width=250)
    table = Table(title="darp-onnx prune with defaults: wall seconds per stage, peak memory", title_justify="left")
    for column in ("model", "GMACs", *SHOWN_STAGES, "wall s", "CPU s", "steps x batch", "peak MiB",
                   "train s / (GMAC x step x sample)", f"<= {GOAL_SECONDS:.0f} s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, path, extra in models(args):
        console.print(f"[dim]{label}: {path}[/]", highlight=False)
        doc = prune_once(path, args, extra)
        table.add_row(*row(label, doc))
        with open(args.workdir / "prune_time.jsonl", "a", encoding="utf-8") as log:
            kept = ("timings", "resources", "wall", "cpu", "error", "search_steps", "finetune_steps", "flops_before",
                    "validation")
            log.write(json.dumps({"label": label, **{k: doc.get(k) for k in kept}}) + "\n")
    console.print(table)
    console.print(f"{torch.get_num_threads()} torch threads; CPU; stage columns from the run's --json 'timings'; "
                  "'wall s' includes the process start and imports.")


if __name__ == "__main__":
    main()
