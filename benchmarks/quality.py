"""Quality: test accuracy after pruning to a MACs budget, every method given the same training steps.

For each sample model, MACs budget and step budget: darp, l1, taylor and random through
`darp_onnx.prune(...)` (write=False, labelled source train split), scored with onnxruntime on the
source test split; and Torch-Pruning (GroupMagnitudeImportance, one shot) on the hand-written torch
model (BatchNorm intact), pruned to the same MACs and fine-tuned with prune()'s recovery recipe
(`darp_onnx.training.recovery`: optimiser, schedule, learning rate, label + distillation loss, batch
stream) for the same total steps. Search steps count: darp spends `--search-share` of the steps
searching, taylor spends its gradient passes, the rest is recovery.

Run from the repository root: `python -m benchmarks.quality [--steps 40 200] [--seeds 0 1] [--vit]`.
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
from rich.console import Console
from rich.table import Table
from torch import nn

from benchmarks.unfold_bn import unfold_batchnorm
from darp_onnx import prune
from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.search.baselines import bn_scores, l1_scores
from darp_onnx.training.dataset import Dataset, load_dataset
from darp_onnx.training.recovery import RecoveryLoss, RecoveryRecipe, lr_factor, make_optimizer
from darp_onnx.validation.checks import run_model
from sample_models.architectures import C2f, Conv, load_trained

try:
    import torch_pruning as tp
except ImportError:  # optional: the `bench` extra
    tp = None

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"
CNNS = ("resnet", "mobilenetv3", "yolov8")
ONNX_METHODS = ("darp", "l1", "taylor", "random", "bn")
OVER_BUDGET = 1.05  # MACs kept above budget x this: not compared for the best
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


def finetune_torch(model: nn.Module, teacher: nn.Module, train: Dataset, config: RecoveryRecipe) -> None:
    """prune()'s recovery recipe on a torch module: the same optimiser, schedule, loss (labels mixed with
    distillation from the unpruned model) and batch stream; BatchNorm in train mode (batch statistics)."""
    torch.manual_seed(config.seed)
    x = torch.from_numpy(train.inputs[INPUT])
    with torch.no_grad():
        reference = teacher.eval()(x).numpy()
    loss_fn = RecoveryLoss(train.labels, [reference], config.distill, config.temperature)
    optimizer = make_optimizer(list(model.parameters()), config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config.schedule, step, config.steps, config.warmup))
    batches = train.batches(config.batch_size, np.random.default_rng(config.seed))
    model.train()
    for _ in range(config.steps):
        idx = next(batches)
        loss = loss_fn((model(x[torch.from_numpy(idx)]),), idx)
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


def prune_onnx(model, method, budget, total, train, args, seed, **options):
    """prune() with `total` steps (`args.search_share` of them searching for darp); returns the result and
    its wall time. `options`: more prune() keywords (e.g. keep_kinds)."""
    search = round(total * args.search_share)
    finetune = total - search
    start = time.perf_counter()
    result = prune(model, method=method, target_flops=budget, data=train, search_steps=search,
                   finetune_steps=finetune, batch_size=args.batch_size, seed=seed, device="cpu",
                   write=False, latency_runs=1, latency_aware=args.latency_aware, holdout=0,  # scored on its test split
                   channel_multiple=args.channel_multiple, **({} if args.lr is None else {"lr": args.lr}), **options)
    seconds = time.perf_counter() - start
    steps = result.search_steps + result.finetune_steps
    if steps != total:
        raise RuntimeError(f"{method}: prune() ran {result.search_steps}+{result.finetune_steps} steps, "
                           f"not {total}")
    return result, seconds


def run_onnx(model, method, budget, total, train, test, args, seed) -> dict[str, Any]:
    result, seconds = prune_onnx(model, method, budget, total, train, args, seed)
    return {"accuracy": onnx_accuracy(result.model, test),
            "macs_kept": result.flops_after / result.flops_before, "seconds": seconds,
            "search_steps": result.search_steps, "finetune_steps": result.finetune_steps}


def run_tp(runner: TorchPruningRun, cache: dict, budget, total, train, test, args, seed) -> dict[str, Any]:
    start = time.perf_counter()
    if budget not in cache:
        cache[budget] = runner.to_budget(budget)
    pruned, ratio = cache[budget]
    model = copy.deepcopy(pruned)
    finetune_torch(model, runner.base, train,
                   RecoveryRecipe(steps=total, lr=args.tp_lr, batch_size=args.batch_size, seed=seed))
    seconds = time.perf_counter() - start
    return {"accuracy": torch_accuracy(model, test),
            "macs_kept": runner.darp_macs(model) / runner.darp_macs(runner.base),
            "tp_macs_kept": runner.tp_macs(model) / runner.tp_macs(runner.base),
            "pruning_ratio": ratio, "seconds": seconds, "search_steps": 0, "finetune_steps": total}


def mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f}±{statistics.stdev(values):.{digits}f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CNNS), choices=(*CNNS, "vit"))
    parser.add_argument("--vit", action="store_true",
                        help="add the ViT (prunable there: MLP hidden units and whole residual branches)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.25, 0.15],
                        help="MACs fractions to keep")
    parser.add_argument("--steps", nargs="+", type=int, default=[40, 200],
                        help="training-step budgets per method (search + recovery); one table each")
    parser.add_argument("--search-share", type=float, default=0.5,
                        help="share of the steps darp spends searching")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None,
                        help="recovery learning rate (default: prune()'s, darp_onnx.training.steps.default_lr)")
    parser.add_argument("--tp-lr", type=float, default=0.01,
                        help="Torch-Pruning's recovery learning rate (0.01: better than 0.03 for it on resnet, "
                             "where 0.03 diverged on one seed of two)")
    parser.add_argument("--methods", nargs="+", default=["darp", "l1", "taylor", "random", "tp"],
                        choices=ALL_METHODS)
    parser.add_argument("--tp-count", choices=("darp", "tp"), default="darp",
                        help="MACs the Torch-Pruning bisection matches: darp-onnx's rule (Conv/Gemm/MatMul, "
                             "as the MACs kept column) or tp.utils.count_ops_and_params (also counts BN and "
                             "activations)")
    parser.add_argument("--tp-global", action="store_true",
                        help="Torch-Pruning global instead of per-layer ratio")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--channel-multiple", default="auto",
                        help="prune's --channel-multiple for the ONNX methods (auto: the default; 1: any width, "
                             "as Torch-Pruning's per-layer ratio)")
    parser.add_argument("--tables-from", nargs="+", type=Path,
                        help="print the tables of runs saved with --json (several files merge) instead of running")
    parser.add_argument("--unfold-bn", action="store_true",
                        help="the ONNX methods prune the samples with BatchNorm as a node after each Conv, as "
                             "paddle2onnx writes them (benchmarks/unfold_bn.py), not folded")
    parser.add_argument("--latency-aware", action="store_true",
                        help="prune the ONNX methods with latency_aware=True (channel multiple: auto)")
    return parser.parse_args()


def run_grid(models, methods, args, console, notes) -> tuple[list[dict[str, Any]], dict[str, float]]:
    runs: list[dict[str, Any]] = []
    original: dict[str, float] = {}
    for name in models:
        model = load_model(SAMPLES / f"{name}.onnx")
        train = load_dataset(DATA, model, split="train")
        test = load_dataset(DATA, model, split="test")
        if args.unfold_bn:
            model = unfold_batchnorm(model, train.subset(np.arange(min(len(train), 256))).inputs)
        original[name] = onnx_accuracy(model, test)
        runner, cache = None, {}
        if "tp" in methods:
            full = CostModel(model, analyse(model), resolve_input_shapes(model, {})).full_macs
            runner = TorchPruningRun(name, full, args.tp_count, args.tp_global)
            torch_acc = torch_accuracy(runner.base, test)
            if abs(torch_acc - original[name]) > 1e-9:
                notes.append(f"{name}: the torch model scores {torch_acc:.4f} on the test split, the ONNX "
                             f"file {original[name]:.4f}")
        for total in args.steps:
            for budget in args.budgets:
                for seed in args.seeds:
                    for method in methods:
                        if method == "tp":
                            row = run_tp(runner, cache, budget, total, train, test, args, seed)
                        else:
                            row = run_onnx(model, method, budget, total, train, test, args, seed)
                        row.update(model=name, budget=budget, seed=seed, method=method, steps=total)
                        runs.append(row)
                        if args.json:  # after every run: a run cut short by a timeout keeps what it measured
                            args.json.write_text(json.dumps({"original": original, "runs": runs, "partial": True}))
                        console.log(f"{name} {budget:g} {total} steps seed {seed} {method}: accuracy "
                                    f"{row['accuracy']:.4f}, MACs kept {row['macs_kept']:.4f}, "
                                    f"{row['seconds']:.0f} s")
    return runs, original


def cell(values: list[float], best_mean: float, best_std: float) -> str:
    """mean±std; '*' where the mean is within one std (of the best method's runs) of the best mean."""
    text = mean_std(values)
    if values and statistics.mean(values) >= best_mean - max(best_std, 1e-12):
        text += " *"
    return text


def print_table(console, runs, models, methods, args, total, original) -> None:
    table = Table(title=f"test accuracy after pruning to a MACs budget, {total} training steps per method "
                        "(search steps count); mean±std over seeds; * within one std of the best at the budget")
    table.add_column("model (full acc)")
    table.add_column("budget", justify="right")
    table.add_column("MACs kept (" + " / ".join(methods) + ")", justify="right")
    for method in methods:
        table.add_column("torch-pruning" if method == "tp" else method, justify="right")
    for name in models:
        for budget in args.budgets:
            cell_runs = {m: [r for r in runs if r["model"] == name and r["budget"] == budget
                             and r["method"] == m and r["steps"] == total] for m in methods}
            accs = {m: [r["accuracy"] for r in cell_runs[m]] for m in methods}
            if not any(accs.values()):
                continue
            kept = {m: statistics.mean(r["macs_kept"] for r in cell_runs[m]) for m in methods if cell_runs[m]}
            # a method that keeps clearly more MACs than the budget (Torch-Pruning on the ViT: 62%) is not in the race
            racing = [m for m in methods if accs[m] and kept[m] <= budget * OVER_BUDGET] or \
                [m for m in methods if accs[m]]
            best = max(racing, key=lambda m: statistics.mean(accs[m]))
            best_std = statistics.stdev(accs[best]) if len(accs[best]) > 1 else 0.0
            macs = " / ".join(f"{kept[m]:.3f}" if m in kept else "-" for m in methods)
            table.add_row(f"{name} ({original[name]:.4f})", f"{budget:g}", macs,
                          *[cell(accs[m], statistics.mean(accs[best]), best_std) if m in racing
                            else f"{mean_std(accs[m])} (over budget)" for m in methods])
    console.print(table)


def tables_from(files: list[Path], args: argparse.Namespace, console: Console) -> None:
    """The tables of saved runs (`--json`, partial ones too), merged; what each cell holds is printed."""
    runs: list[dict[str, Any]] = []
    original: dict[str, float] = {}
    for file in files:
        saved = json.loads(file.read_text())
        runs += saved["runs"]
        original.update(saved["original"])
    models = list(dict.fromkeys(r["model"] for r in runs))
    methods = [m for m in ALL_METHODS if any(r["method"] == m for r in runs)]
    args.budgets = sorted({r["budget"] for r in runs}, reverse=True)
    for total in sorted({r["steps"] for r in runs}):
        print_table(console, runs, models, methods, args, total, original)
        seeds = sorted({r["seed"] for r in runs if r["steps"] == total})
        console.print(f"{total} steps: {sum(r['steps'] == total for r in runs)} runs from "
                      f"{', '.join(str(f) for f in files)}; seeds {' '.join(map(str, seeds))}", markup=False)


def main() -> None:
    args = parse_args()
    if args.tables_from:
        tables_from(args.tables_from, args, Console(width=220))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    models = list(dict.fromkeys([*args.models, *(["vit"] if args.vit else [])]))
    methods = [m for m in args.methods if m != "tp" or tp is not None]
    console = Console(width=220)
    notes: list[str] = []
    if "tp" in args.methods and tp is None:
        notes.append("Torch-Pruning column skipped: torch_pruning is not importable "
                     "(pip install -e .[bench])")
    started = time.perf_counter()
    runs, original = run_grid(models, methods, args, console, notes)
    for total in args.steps:
        print_table(console, runs, models, methods, args, total, original)
    recipe = RecoveryRecipe(steps=0, lr=args.lr)
    header = (f"seeds {' '.join(map(str, args.seeds))} | steps {' '.join(map(str, args.steps))} | darp "
              f"{args.search_share:g} of them searching | channel multiple {args.channel_multiple} | batch "
              f"{args.batch_size} | CPU, {torch.get_num_threads()} torch thread(s)"
              f"{' | BatchNorm unfolded (a node after each Conv)' if args.unfold_bn else ''}")
    console.print(header, markup=False)
    cnn, dense = recipe.optimizer_with(True), recipe.optimizer_with(False, dense=True)
    notes.append(f"recovery (all methods, Torch-Pruning included): {cnn[0]} lr {cnn[1]:g} "
                 f"(without re-inserted BatchNorm normalising most layers, in a dense model, the ViT: {dense[0]} "
                 f"lr {dense[1]:g}), "
                 f"{recipe.schedule} with {recipe.warmup:g} warm-up, loss {1 - recipe.distill:g} x cross-entropy + "
                 f"{recipe.distill:g} x distillation from the unpruned model (T={recipe.temperature:g}); the ONNX "
                 "methods train the proxy with BatchNorm re-inserted after each convolution (adaptive "
                 "re-estimation, folded back before the rewrite), Torch-Pruning its own BatchNorm layers, at "
                 f"lr {args.tp_lr:g}")
    notes.append("taylor: 8 gradient passes for the scores, counted as steps; MACs kept: exact ratio by "
                 "darp-onnx's count (Conv/Gemm/MatMul MACs at batch 1), mean over seeds")
    if "tp" in methods:
        tp_runs = [r for r in runs if r["method"] == "tp"]
        ratios = ", ".join(sorted({f"{r['model']} {r['budget']:g}: ratio {r['pruning_ratio']:.3f}" for r in tp_runs}))
        notes.append(f"torch-pruning {tp.__version__}: MetaPruner, GroupMagnitudeImportance(), one shot, "
                     f"{'global' if args.tp_global else 'uniform per-layer'} ratio bisected to the MACs target "
                     f"(final Linear kept): {ratios}")
        missed = sorted({f"{r['model']} {r['budget']:g} (reached {r['macs_kept']:.4f})" for r in tp_runs
                         if abs(r["macs_kept"] / r["budget"] - 1.0) > 0.01})
        if missed:
            notes.append("torch-pruning missed the budget by more than 1% on " + ", ".join(missed))
    for note in notes:
        console.print(f"- {note}", markup=False)
    console.print(f"total wall time {time.perf_counter() - started:.0f} s (shared, loaded machine)", markup=False)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "original": original, "runs": runs, "notes": notes},
                                        indent=1))


if __name__ == "__main__":
    main()
