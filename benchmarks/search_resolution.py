"""Reduced-resolution search: do gates ranked on downscaled images choose the same channels, and what does it cost?

For each sample model (trained on the digits, 32x32) and seed, `prune()` runs twice with the same steps:
the search at full size and at `--search-resolution` (extraction, fine-tune and validation at full size
in both). Printed per model: the share of prunable channels whose keep/drop decision differs, the
residual branches whose decision differs, the search seconds, and the test accuracy (onnxruntime, the
digits test split) of both pruned models. Models the reduced search does not apply to (ViT: position
embeddings fix the input size) are listed with the reason.

Run from the repository root: `python -m benchmarks.search_resolution [--models resnet,mobilenetv3,yolov8,vit]
[--scale 0.5] [--seeds 0,1] [--steps 200] [--finetune-steps 100] [--budget 0.5]`
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from darp_onnx import prune
from darp_onnx.training.dataset import Dataset
from sample_models.data import load as load_digits

ROOT_MODELS = "sample_models/{}.onnx"


def accuracy(model, x: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def decisions_differ(analysis_groups: list[dict], a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple:
    """(channels that differ, prunable channels, branches that differ, branches)."""
    kinds = {g["id"]: g["kind"] for g in analysis_groups}
    channels = differ = branches = branch_differ = 0
    for gid, mask in a.items():
        changed = int(np.count_nonzero(mask != b[gid]))
        if kinds[gid] == "branch":
            branches += mask.size
            branch_differ += changed
        else:
            channels += mask.size
            differ += changed
    return differ, channels, branch_differ, branches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet,mobilenetv3,yolov8,vit")
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--budget", type=float, default=0.5)
    args = parser.parse_args()
    digits = load_digits("source")
    train = Dataset({"input": digits["train_input"]}, digits["train_labels"], "digits source train")
    console = Console(width=200)
    table = Table(title=f"search at {args.scale:g}x vs full resolution, {args.budget:.0%} MACs, {args.steps} search + "
                        f"{args.finetune_steps} fine-tune steps, digits (labels), test accuracy by onnxruntime",
                  title_justify="left")
    for column in ("model", "seed", "channels differing", "branches differing", "search s full", "search s reduced",
                   "acc full", "acc reduced", "note"):
        table.add_column(column, justify="left" if column in ("model", "note") else "right")
    for name in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            runs = {}
            for scale in (1.0, args.scale):
                runs[scale] = prune(ROOT_MODELS.format(name), data=train, target_flops=args.budget,
                                    search_steps=args.steps, finetune_steps=args.finetune_steps, seed=seed,
                                    write=False, time_budget="off", search_resolution=scale, holdout=0)
            full, reduced = runs[1.0], runs[args.scale]
            note = reduced.resources.get("search_resolution", "")
            differ, channels, bdiff, branches = decisions_differ(full.groups, full.masks, reduced.masks)
            acc = [accuracy(r.model, digits["test_input"], digits["test_labels"]) for r in (full, reduced)]
            cells = [name, str(seed), f"{differ}/{channels} ({differ / max(channels, 1):.1%})", f"{bdiff}/{branches}",
                     f"{full.timings['search']:.1f}", f"{reduced.timings['search']:.1f}", f"{acc[0]:.3f}",
                     f"{acc[1]:.3f}", str(note)]
            table.add_row(*cells)
            print(" | ".join(cells), flush=True)  # each row as soon as it is measured
    console.print(table)


if __name__ == "__main__":
    main()
