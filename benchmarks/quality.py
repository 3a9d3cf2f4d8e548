"""Quality: test accuracy after pruning to a MACs budget, every method given the same training steps.

For each CNN sample model and MACs budget: darp, l1, bn and random through `darp_onnx.prune(...)`
(write=False, labelled source train split, cross-entropy), scored with onnxruntime on the source test
split; and Torch-Pruning (GroupMagnitudeImportance, one shot) on the hand-written torch model, pruned
to the same MACs and fine-tuned for the same total steps with the same optimiser, warm-up, batch
size and data. darp spends `--search-share` of the steps searching, the rest fine-tuning; the
baselines spend all of them fine-tuning (prune() turns unused search steps into fine-tuning).

Run from the repository root: `python -m benchmarks.quality [--total-steps 300] [--seeds 0 1] [--vit]`.
Torch-Pruning is an optional dependency (`pip install -e .[bench]`); without it its column is skipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from darp_onnx import prune
from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.search.baselines import bn_scores, l1_scores
from darp_onnx.training.dataset import Dataset, load_dataset
from darp_onnx.training.steps import warmup_schedule
from darp_onnx.validation.checks import run_model
from sample_models.architectures import C2f, Conv, load_trained

try:
    import torch_pruning as tp
except ImportError:  # optional: the `bench` extra
    tp = None

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"
CNNS = ("resnet", "mobilenetv3", "yolov8")
ONNX_METHODS = ("darp", "l1", "bn", "random")
ALL_METHODS = (*ONNX_METHODS, "tp")
INPUT = "input"


# --- data and scoring ---------------------------------------------------------------------------


def onnx_accuracy(model: onnx.ModelProto, test: Dataset) -> float:
    logits = run_model(model, test.inputs, "cpu", "benchmark model")[0][0]
    return float((logits.argmax(axis=1) == test.labels).mean())


@torch.no_grad()
def torch_accuracy(model: nn.Module, test: Dataset) -> float:
    model.eval()
    logits = model(torch.from_numpy(test.inputs[INPUT])).numpy()
    return float((logits.argmax(axis=1) == test.labels).mean())


# --- Torch-Pruning on the hand-written models ---------------------------------------------------


def _half(conv: Conv, lo: int, hi: int) -> Conv:
    """Output channels lo:hi of a Conv-BN-SiLU block as a block of its own (same weights, same stats)."""
    part = Conv(conv.conv.in_channels, hi - lo, conv.conv.kernel_size[0], conv.conv.stride[0])
    with torch.no_grad():
        part.conv.weight.copy_(conv.conv.weight[lo:hi])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(part.bn, name).copy_(getattr(conv.bn, name)[lo:hi])
        part.bn.num_batches_tracked.copy_(conv.bn.num_batches_tracked)
    part.bn.eps, part.bn.momentum = conv.bn.eps, conv.bn.momentum
    return part


class C2fNoSplit(nn.Module):
    """C2f with its 1x1 conv computed as two convs instead of one conv and a split: the same function,
    in the form Torch-Pruning can trace (its dependency graph fails on C2f's torch.split + cat)."""

    def __init__(self, c2f: C2f) -> None:
        super().__init__()
        self.cv0, self.cv1 = _half(c2f.cv1, 0, c2f.c), _half(c2f.cv1, c2f.c, 2 * c2f.c)
        self.m, self.cv2 = c2f.m, c2f.cv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


def _replace_c2f(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, C2f):
            setattr(module, name, C2fNoSplit(child))
        else:
            _replace_c2f(child)


def torch_model(name: str) -> nn.Module:
    model = load_trained(name)
    if name == "yolov8":
        x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            before = model(x)
            _replace_c2f(model)
            model.eval()
            diff = float((model(x) - before).abs().max())
        if diff > 1e-5:
            raise RuntimeError(f"yolov8: C2f rewrite changed the outputs by {diff}")
    return model.eval()


def conv_linear_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of Conv2d and Linear modules at batch 1, by darp-onnx's counting rule (output elements x
    input channels per group x kernel)."""
    total = 0

    def hook(mod, _inputs, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out[0].numel() * (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))
        else:
            total += out[0].numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    return total


class TorchPruningRun:
    """One-shot Torch-Pruning of a hand-written model, the per-layer ratio bisected to a MACs target."""

    def __init__(self, name: str, darp_full_macs: int, count: str, global_pruning: bool) -> None:
        self.name = name
        self.base = torch_model(name)
        self.example = torch.zeros(1, 1, 32, 32)
        self.count = count
        self.global_pruning = global_pruning
        # MatMuls outside modules (ViT attention) are not pruned here: a constant under darp's rule
        self.matmul_macs = darp_full_macs - conv_linear_macs(self.base, self.example)
        self.full = self.macs(self.base)

    def tp_macs(self, model: nn.Module) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(tp.utils.count_ops_and_params(model, self.example)[0])

    def darp_macs(self, model: nn.Module) -> int:
        return conv_linear_macs(model, self.example) + self.matmul_macs

    def macs(self, model: nn.Module) -> int:
        return self.tp_macs(model) if self.count == "tp" else self.darp_macs(model)

    def ignored(self, model: nn.Module) -> list[nn.Module]:
        layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        if self.name == "vit":  # as darp on the ViT: the MLP hidden units only
            hidden = {id(block.mlp[0]) for block in model.blocks}
            return [m for m in layers if id(m) not in hidden]
        return [m for m in layers if isinstance(m, nn.Linear)][-1:]  # the classifier's output layer

    def pruned(self, ratio: float) -> nn.Module:
        model = copy.deepcopy(self.base)
        if ratio <= 0:
            return model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                model, self.example, importance=tp.importance.GroupMagnitudeImportance(),
                pruning_ratio=ratio, iterative_steps=1, ignored_layers=self.ignored(model),
                global_pruning=self.global_pruning,
            )
            pruner.step()
        return model

    def to_budget(self, fraction: float, iterations: int = 14) -> tuple[nn.Module, float]:
        """The pruned model whose MACs are closest to `fraction` of the full model's, and its ratio."""
        target = fraction * self.full
        lo, hi = 0.0, 0.95
        best: tuple[float, float] = (self.full / target - 1.0, 0.0)  # (relative miss, ratio)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            macs = self.macs(self.pruned(mid))
            best = min(best, (abs(macs / target - 1.0), mid))
            lo, hi = (mid, hi) if macs > target else (lo, mid)
        return self.pruned(best[1]), best[1]


def finetune_torch(model: nn.Module, train: Dataset, *, steps: int, lr: float, batch_size: int,
                   seed: int) -> None:
    """What darp_onnx.training.steps.train_steps does to the proxy, on a torch module: Adam, the same warm-up,
    the same batch stream, cross-entropy; BatchNorm in train mode (its statistics update)."""
    torch.manual_seed(seed)
    x, y = torch.from_numpy(train.inputs[INPUT]), torch.from_numpy(train.labels.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = warmup_schedule(optimizer, steps)
    batches = train.batches(batch_size, np.random.default_rng(seed))
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(next(batches))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


# --- the benchmark ------------------------------------------------------------------------------


def bn_equals_l1(model: onnx.ModelProto) -> bool:
    """bn scores fall back to l1 where the graph has no BatchNormalization (folded): same masks, same run."""
    analysis = analyse(model)
    a, b = l1_scores(model, analysis), bn_scores(model, analysis)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def run_onnx(model, method, budget, train, test, args, seed) -> dict[str, Any]:
    search = round(args.total_steps * args.search_share)
    finetune = args.total_steps - search
    start = time.perf_counter()
    result = prune(model, method=method, target_flops=budget, data=train, search_steps=search,
                   finetune_steps=finetune, batch_size=args.batch_size, seed=seed, device="cpu",
                   write=False, latency_runs=1, latency_aware=args.latency_aware,
                   channel_multiple=args.channel_multiple)
    seconds = time.perf_counter() - start
    steps = result.search_steps + result.finetune_steps
    if steps != args.total_steps:
        raise RuntimeError(f"{method}: prune() ran {result.search_steps}+{result.finetune_steps} steps, "
                           f"not {args.total_steps}")
    return {"accuracy": onnx_accuracy(result.model, test),
            "macs_kept": result.flops_after / result.flops_before, "seconds": seconds,
            "search_steps": result.search_steps, "finetune_steps": result.finetune_steps}


def run_tp(runner: TorchPruningRun, cache: dict, budget, train, test, args, seed) -> dict[str, Any]:
    start = time.perf_counter()
    if budget not in cache:
        cache[budget] = runner.to_budget(budget)
    pruned, ratio = cache[budget]
    model = copy.deepcopy(pruned)
    finetune_torch(model, train, steps=args.total_steps, lr=args.lr, batch_size=args.batch_size, seed=seed)
    seconds = time.perf_counter() - start
    return {"accuracy": torch_accuracy(model, test),
            "macs_kept": runner.darp_macs(model) / runner.darp_macs(runner.base),
            "tp_macs_kept": runner.tp_macs(model) / runner.tp_macs(runner.base),
            "pruning_ratio": ratio, "seconds": seconds, "search_steps": 0, "finetune_steps": args.total_steps}


def mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f}±{statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CNNS), choices=(*CNNS, "vit"))
    parser.add_argument("--vit", action="store_true",
                        help="add the ViT (prunable there: MLP hidden units and whole residual branches)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.25],
                        help="MACs fractions to keep")
    parser.add_argument("--total-steps", type=int, default=300,
                        help="training steps per method (search + fine-tune)")
    parser.add_argument("--search-share", type=float, default=0.5,
                        help="share of the steps darp spends searching")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="fine-tuning learning rate (prune()'s default)")
    parser.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    parser.add_argument("--tp-count", choices=("darp", "tp"), default="darp",
                        help="MACs the Torch-Pruning bisection matches: darp-onnx's rule (Conv/Gemm/MatMul, "
                             "as the MACs kept column) or tp.utils.count_ops_and_params (also counts BN and "
                             "activations)")
    parser.add_argument("--tp-global", action="store_true",
                        help="Torch-Pruning global instead of per-layer ratio")
    parser.add_argument("--no-reuse", action="store_true", help="run bn even where its scores equal l1's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--channel-multiple", default="auto",
                        help="prune's --channel-multiple for the ONNX methods (auto: the default; 1: any width, "
                             "what the tables in docs/results.md before the latency section used)")
    parser.add_argument("--latency-aware", action="store_true",
                        help="prune the ONNX methods with latency_aware=True (channel multiple: auto)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = list(dict.fromkeys([*args.models, *(["vit"] if args.vit else [])]))
    methods = [m for m in args.methods if m != "tp" or tp is not None]
    console = Console(width=220)
    notes: list[str] = []
    if "tp" in args.methods and tp is None:
        notes.append("Torch-Pruning column skipped: torch_pruning is not importable "
                     "(pip install -e .[bench])")

    search = round(args.total_steps * args.search_share)
    runs: list[dict[str, Any]] = []
    original: dict[str, float] = {}
    reused: set[str] = set()
    started = time.perf_counter()
    for name in models:
        model = load_model(SAMPLES / f"{name}.onnx")
        train = load_dataset(DATA, model, split="train")
        test = load_dataset(DATA, model, split="test")
        original[name] = onnx_accuracy(model, test)
        reuse_bn = not args.no_reuse and "bn" in methods and "l1" in methods and bn_equals_l1(model)
        if reuse_bn:
            reused.add(name)
        runner, cache = None, {}
        if "tp" in methods:
            full = CostModel(model, analyse(model), resolve_input_shapes(model, {})).full_macs
            runner = TorchPruningRun(name, full, args.tp_count, args.tp_global)
            torch_acc = torch_accuracy(runner.base, test)
            if abs(torch_acc - original[name]) > 1e-9:
                notes.append(f"{name}: the torch model scores {torch_acc:.4f} on the test split, the ONNX "
                             f"file {original[name]:.4f}")
        for budget in args.budgets:
            for seed in args.seeds:
                for method in methods:
                    if method == "bn" and reuse_bn:
                        row = dict(next(r for r in runs if r["model"] == name and r["budget"] == budget
                                        and r["seed"] == seed and r["method"] == "l1"), reused_from="l1")
                    elif method == "tp":
                        row = run_tp(runner, cache, budget, train, test, args, seed)
                    else:
                        row = run_onnx(model, method, budget, train, test, args, seed)
                    row.update(model=name, budget=budget, seed=seed, method=method)
                    runs.append(row)
                    console.log(f"{name} {budget:g} seed {seed} {method}: accuracy {row['accuracy']:.4f}, "
                                f"MACs kept {row['macs_kept']:.4f}, {row['seconds']:.0f} s"
                                + (" (= l1)" if row.get("reused_from") else ""))

    seeds = " ".join(map(str, args.seeds))
    header = (f"seeds {seeds} | {args.total_steps} steps per method: darp {search} search + "
              f"{args.total_steps - search} fine-tune, baselines and Torch-Pruning {args.total_steps} "
              f"fine-tune | batch {args.batch_size} | CPU, {torch.get_num_threads()} torch thread(s) | "
              "original test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in original.items()))
    table = Table(title="test accuracy (source test split) after pruning to a MACs budget, same training "
                        "steps; cell: accuracy, mean±std over seeds (wall s per run)")
    table.add_column("model")
    table.add_column("budget", justify="right")
    table.add_column("MACs kept (" + " / ".join(methods) + ")", justify="right")
    for method in methods:
        table.add_column("torch-pruning" if method == "tp" else method, justify="right")
    for name in models:
        for budget in args.budgets:
            cell_runs = {m: [r for r in runs
                             if r["model"] == name and r["budget"] == budget and r["method"] == m]
                         for m in methods}
            macs = " / ".join(f"{statistics.mean(r['macs_kept'] for r in cell_runs[m]):.4f}" for m in methods)
            cells = []
            for m in methods:
                acc = mean_std([r["accuracy"] for r in cell_runs[m]])
                secs = "= l1" if cell_runs[m][0].get("reused_from") else \
                    f"{statistics.mean(r['seconds'] for r in cell_runs[m]):.0f} s"
                cells.append(f"{acc} ({secs})")
            table.add_row(name, f"{budget:g}", macs, *cells)
    console.print(table)
    console.print(header, markup=False)
    if reused:
        notes.append(f"bn = l1 on {', '.join(sorted(reused))}: no BatchNormalization node in the ONNX graphs "
                     "(folded into the convolutions, or none at all), so bn's scores fall back to l1's "
                     "(checked equal) and its run is l1's")
    notes.append("MACs kept: exact ratio by darp-onnx's count (Conv/Gemm/MatMul MACs at batch 1), "
                 "mean over seeds; the ONNX methods meet the budget from below (validated recount of the "
                 "rewritten model)")
    notes.append(f"darp: {search} search steps (weights at lr 3e-4 on half of them, logits on the "
                 f"other half), then {args.total_steps - search} fine-tune steps at lr {args.lr:g} with "
                 f"the hard masks; baselines: {args.total_steps} fine-tune steps; fine-tuning is Adam "
                 "with a linear warm-up over 10% of the steps")
    if "tp" in methods:
        tp_runs = [r for r in runs if r["method"] == "tp"]
        ratios = ", ".join(sorted({f"{r['model']} {r['budget']:g}: ratio {r['pruning_ratio']:.3f}, "
                                   f"tp-count {r['tp_macs_kept']:.4f}" for r in tp_runs}))
        counter = "darp-onnx-rule" if args.tp_count == "darp" else "tp.utils.count_ops_and_params"
        vit_note = ("; ViT: MLP hidden units only (darp-onnx's ViT groups are the MLP hidden units and the "
                    "residual attention/MLP branches, which every ONNX method may drop whole)")
        notes.append(
            f"torch-pruning {tp.__version__}: MetaPruner, GroupMagnitudeImportance() (L2, mean over the "
            f"group), one shot, {'global' if args.tp_global else 'uniform per-layer'} pruning ratio bisected "
            f"so {counter} MACs are closest to the target; final Linear kept"
            f"{vit_note if 'vit' in models else ''}. Per-layer ratio and MACs kept by "
            f"tp.utils.count_ops_and_params (which also counts BN and activations): {ratios}")
        missed = sorted({f"{r['model']} {r['budget']:g} (reached {r['macs_kept']:.4f})" for r in tp_runs
                         if abs(r["macs_kept"] / r["budget"] - 1.0) > 0.01})
        if missed:
            notes.append("torch-pruning missed the budget by more than 1% on " + ", ".join(missed) +
                         ": not comparable there")
        notes.append("torch-pruning runs on the hand-written torch model, whose BatchNorm layers are "
                     "separate and in train mode while fine-tuning (batch statistics, running stats "
                     "updated), evaluated in eval mode; the ONNX methods train the proxy, where BatchNorm "
                     "is folded into the convolutions (no batch statistics)"
                     + (". yolov8's C2f split is rewritten as two 1x1 convs (same function) because "
                        "Torch-Pruning cannot trace its torch.split + cat" if "yolov8" in models else ""))
    notes.append("wall s: prune() end to end (analysis, search, fine-tune, rewrite, validation) or, for "
                 "torch-pruning, bisection (first seed only) + fine-tune; the machine is shared, times are "
                 "rough")
    for note in notes:
        console.print(f"- {note}", markup=False)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s", markup=False)
    if args.json:
        payload = {"header": header, "original": original, "runs": runs, "notes": notes}
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
