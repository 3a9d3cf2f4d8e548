"""Few-shot transfer: do DARP sub-architectures found on the source task, retrained on a handful of
target examples, match or beat the full model and other sub-architectures of the same MACs?

The claim under test is that of Colombo & Gao (2021), "Differentiable Architecture Pruning for Transfer
Learning". Source task: digits 0-4 (sample_models/data/digits_source.npz, train split with labels).
Target task: digits 5-9 relabelled 0-4 (digits_target.npz); k examples per class are drawn from its
train split (seeded) and every condition is tested on the whole target test split with onnxruntime.

Architectures (searched once per budget and method, seed 0, and reused for every seed; the random
baseline draws a new architecture for each seed):
  darp    `prune(method="darp")` on the source data: `search_share` of `search_steps` searching (the
          weights train with the gates), the rest fine-tuning the pruned model, as benchmarks/quality.py.
          (Before stop 24 darp got no fine-tune: its pruned models scored 0.66 on the source test split.)
  l1      `prune(method="l1")`; prune gives a baseline `search_steps` recovery steps on the source so that
          it sees as much source training as DARP.
  random  `prune(method="random", seed=s)`, same recovery as l1.

Conditions, all with a fresh 5-class head (`new_head=5`; the target has 5 classes like the source, and
a fresh head everywhere keeps the source classifier from helping or hurting one condition only) and the
same steps, learning rate, batch size, seed and training examples; no validation split
(`val_fraction=0`, so no early stopping: a fixed number of steps, the last weights are tested):
  full model, all weights | full model, new head only (`freeze_backbone`) |
  darp inherit | darp reinit | l1 inherit | random inherit   (the last four at each budget)

Run from the repository root: `python -m benchmarks.transfer [--model resnet] [--budgets 0.5 0.25]
[--shots 1 5 10 20] [--seeds 0 1 2] [--search-steps 200] [--finetune-steps 100] [--plot PATH]`.
Needs matplotlib for the plot (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from rich.console import Console
from rich.table import Table

from darp_onnx.load.io import load_model
from darp_onnx.runtime.session import make_session, run_session
from darp_onnx.training.dataset import Dataset, load_dataset
from darp_onnx.training.steps import ADAM_LR, SGD_LR
from darp_onnx.workflows.finetune import finetune
from darp_onnx.workflows.prune import prune

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SOURCE = SAMPLES / "data" / "digits_source.npz"
TARGET = SAMPLES / "data" / "digits_target.npz"
DEFAULT_PLOT = ROOT / "benchmarks" / "results" / "transfer.png"
CLASSES = 5
# Defaults sized to finish in well under 25 minutes on 2 shared CPU cores with one torch thread
# (measured: ~18 minutes). The brief asked for 5 seeds; 5 seeds take about 30 minutes here.
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class Arch:
    method: str
    budget: float
    model: onnx.ModelProto
    macs_fraction: float
    params: int
    params_full: int
    source_accuracy: float
    seconds: float


def log(start: float, message: str) -> None:
    elapsed = time.perf_counter() - start
    print(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}", file=sys.stderr, flush=True)


def accuracy(model: onnx.ModelProto, inputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the model's first output, with onnxruntime on the CPU."""
    session = make_session(model)
    name = session.get_inputs()[0].name
    logits = run_session(session, {name: inputs})[0]
    return float((logits.argmax(axis=1) == labels).mean())


def few_shot(target: dict[str, np.ndarray], k: int, seed: int) -> Dataset:
    """k training examples of each class from the target train split, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    labels = target["train_labels"]
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c in range(CLASSES)])
    return Dataset({"input": target["train_input"][idx]}, labels[idx], f"target k={k} seed={seed}")


def search(model, source, source_test, method, budget, seed, args) -> Arch:
    start = time.perf_counter()
    search = round(args.search_steps * args.search_share) if method == "darp" else args.search_steps
    result = prune(model, target_flops=budget, method=method, data=source, search_steps=search,
                   finetune_steps=args.search_steps - search, batch_size=args.batch_size, seed=seed, device="cpu",
                   write=False, latency_runs=1, channel_multiple=args.channel_multiple, holdout=0)  # test split scores
    return Arch(method, budget, result.model, result.flops_after / result.flops_before, result.params_after,
                result.params_before, accuracy(result.model, *source_test), time.perf_counter() - start)


def retrain(model, data, init, seed, args, freeze_backbone=False) -> onnx.ModelProto:
    return finetune(model, data=data, steps=args.finetune_steps, lr=args.lr, batch_size=args.batch_size,
                    init=init, new_head=CLASSES, freeze_backbone=freeze_backbone, val_fraction=0.0,
                    seed=seed, device="cpu", write=False).model


def conditions(budgets) -> list[str]:
    names = ["full model, all weights", "full model, new head only"]
    for b in budgets:
        names += [f"darp {b:.0%} inherit", f"darp {b:.0%} reinit", f"l1 {b:.0%} inherit",
                  f"random {b:.0%} inherit"]
    return names


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def plot(path: Path, results, budgets, shots, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets), 4.5), sharey=True, squeeze=False)
    styles = {"full model, all weights": ("black", "-", "o"),
              "full model, new head only": ("grey", "--", "s"),
              "darp": ("tab:red", "-", "o"), "darp reinit": ("tab:orange", ":", "v"),
              "l1": ("tab:blue", "-", "^"), "random": ("tab:green", "-", "D")}
    for ax, budget in zip(axes[0], budgets, strict=True):
        tag = f"{budget:.0%}"
        lines = [("full model, all weights", "full model, all weights"),
                 ("full model, new head only", "full model, new head only"),
                 (f"darp {tag} inherit", "darp"), (f"darp {tag} reinit", "darp reinit"),
                 (f"l1 {tag} inherit", "l1"), (f"random {tag} inherit", "random")]
        for i, (name, style) in enumerate(lines):
            color, dash, marker = styles[style]
            means = [mean_std(results[name][k])[0] for k in shots]
            stds = [mean_std(results[name][k])[1] for k in shots]
            xs = [k * (1 + 0.025 * (i - len(lines) / 2)) for k in shots]  # spread the error bars apart
            ax.errorbar(xs, means, yerr=stds, color=color, linestyle=dash, marker=marker, capsize=3,
                        label=name)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(shots)
        ax.set_xticklabels([str(k) for k in shots])
        ax.set_xlabel("training examples per class (k)")
        ax.set_title(f"sub-architectures at {tag} MACs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0][0].set_ylabel("target test accuracy (mean ± std over seeds)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet", help="a sample model name (sample_models/NAME.onnx)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25], help="MACs fractions")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 20], help="examples per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="seeds for the few-shot draw, head init, batches and random masks "
                             "(default 3 seeds to fit ~20 minutes; 0 1 2 3 4 takes ~30)")
    parser.add_argument("--search-steps", type=int, default=200)
    parser.add_argument("--search-share", type=float, default=0.5,
                        help="share of the --search-steps darp searches; the rest fine-tunes the pruned model on "
                             "the source, as benchmarks/quality.py (l1/random: all of them recover)")
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="target retraining learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--channel-multiple", default="auto",
                        help="prune's --channel-multiple (auto: the default; docs/results.md's table used 1)")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    model_path = SAMPLES / f"{args.model}.onnx"
    model = load_model(model_path)
    source = load_dataset(SOURCE, model, split="train")
    with np.load(SOURCE) as s:
        source_test = (s["test_input"], s["test_labels"])
    with np.load(TARGET) as t:
        target = {k: t[k] for k in ("train_input", "train_labels", "test_input", "test_labels")}
    test = (target["test_input"], target["test_labels"])

    archs: dict[tuple[str, float, int | None], Arch] = {}
    for budget in args.budgets:
        for method in ("darp", "l1"):
            archs[method, budget, None] = a = search(model, source, source_test, method, budget, 0, args)
            log(start, f"{method} {budget:.0%}: {a.macs_fraction:.3f} of the MACs, {a.params} params, "
                       f"source test acc {a.source_accuracy:.3f} ({a.seconds:.0f} s)")
        for seed in args.seeds:
            a = search(model, source, source_test, "random", budget, seed, args)
            archs["random", budget, seed] = a
            log(start, f"random {budget:.0%} seed {seed}: {a.macs_fraction:.3f} of the MACs, "
                       f"{a.params} params, source test acc {a.source_accuracy:.3f} ({a.seconds:.0f} s)")

    names = conditions(args.budgets)
    results: dict[str, dict[int, list[float]]] = {n: {k: [] for k in args.shots} for n in names}
    for seed in args.seeds:
        for k in args.shots:
            data = few_shot(target, k, seed)
            runs = [("full model, all weights", model, "inherit", False),
                    ("full model, new head only", model, "inherit", True)]
            for b in args.budgets:
                runs += [(f"darp {b:.0%} inherit", archs["darp", b, None].model, "inherit", False),
                         (f"darp {b:.0%} reinit", archs["darp", b, None].model, "reinit", False),
                         (f"l1 {b:.0%} inherit", archs["l1", b, None].model, "inherit", False),
                         (f"random {b:.0%} inherit", archs["random", b, seed].model, "inherit", False)]
            for name, m, init, frozen in runs:
                acc = accuracy(retrain(m, data, init, seed, args, freeze_backbone=frozen), *test)
                results[name][k].append(acc)
            log(start, f"seed {seed} k={k}: " + ", ".join(f"{n} {results[n][k][-1]:.3f}" for n in names))
    seconds = time.perf_counter() - start

    full = model_path.name
    full_acc = accuracy(model, *source_test)
    settings = [
        f"model {full} (source test acc {full_acc:.3f}); source: {SOURCE.name} train split "
        f"({len(source)} labelled); target: {TARGET.name}, k per class from its train split, tested on its "
        f"whole test split ({len(test[1])} examples, onnxruntime CPU)",
        f"search (once per method and budget, seed 0, reused for every seed; random: one architecture per "
        f"seed): darp {round(args.search_steps * args.search_share)} search + "
        f"{args.search_steps - round(args.search_steps * args.search_share)} source recovery steps; l1/random get "
        f"{args.search_steps} source recovery "
        f"steps (prune's equal-budget rule); prune's default optimisers (joint search: logits Adam, weights "
        f"SGD at {SGD_LR:g} with BatchNorm re-inserted; recovery SGD at {SGD_LR:g}; Adam at {ADAM_LR:g} "
        f"in dense models where no BatchNorm normalises most layers), batch {args.batch_size}",
        f"retraining, every condition: {args.finetune_steps} Adam steps, lr {args.lr:g}, batch "
        f"{args.batch_size} (all k*{CLASSES} examples when fewer), fresh {CLASSES}-class head, "
        f"val_fraction 0 (no early stopping, last weights), same examples and seed per condition",
        "fixed steps mean unequal passes over the data: "
        + ", ".join(f"k={k} {args.finetune_steps * min(args.batch_size, CLASSES * k) / (CLASSES * k):.0f} epochs"
                    for k in args.shots),
        f"seeds {' '.join(map(str, args.seeds))} ({len(args.seeds)}; the default is 3 seeds, not 5, "
        f"to fit ~20 min on 2 shared CPU cores); cells: mean ± sample std of test accuracy over seeds; "
        f"chance 0.200",
    ]
    for (method, budget, _), a in archs.items():
        if method != "random":
            settings.append(f"{method} {budget:.0%}: {a.macs_fraction:.3f} of the MACs, {a.params} params "
                            f"(full {a.params_full}), "
                            f"source test acc {a.source_accuracy:.3f}")
    for budget in args.budgets:
        rand = [archs["random", budget, s] for s in args.seeds]
        settings.append(f"random {budget:.0%}: {statistics.fmean(a.macs_fraction for a in rand):.3f} of the "
                        f"MACs (mean), source test acc "
                        + " ".join(f"{a.source_accuracy:.3f}" for a in rand))
    settings.append(f"run time {seconds / 60:.1f} min, {torch.get_num_threads()} torch thread(s)")

    console = Console(width=160)
    console.print(f"[bold]Few-shot transfer, {args.model}: source digits 0-4 -> target digits 5-9[/bold]")
    for line in settings:
        print(f"  {line}", flush=True)
    table = Table(title="target test accuracy (mean ± std over seeds)")
    table.add_column("condition")
    for k in args.shots:
        table.add_column(f"k={k}", justify="right")
    for name in names:
        table.add_row(name, *(cell(results[name][k]) for k in args.shots))
    console.print(table)

    paired = Table(title="darp inherit minus each condition, same seed and examples: "
                         "mean ± std (darp higher in n/seeds)")
    paired.add_column("darp inherit vs")
    for k in args.shots:
        paired.add_column(f"k={k}", justify="right")
    for b in args.budgets:
        ours = f"darp {b:.0%} inherit"
        others = ["full model, all weights", "full model, new head only", f"darp {b:.0%} reinit",
                  f"l1 {b:.0%} inherit", f"random {b:.0%} inherit"]
        for other in others:
            row = []
            for k in args.shots:
                diffs = [x - y for x, y in zip(results[ours][k], results[other][k], strict=True)]
                wins = sum(d > 0 for d in diffs)
                mean, std = mean_std(diffs)
                row.append(f"{mean:+.3f} ± {std:.3f} ({wins}/{len(diffs)})")
            paired.add_row(other if "%" in other else f"{other} (vs darp {b:.0%})", *row)
    console.print(paired)

    title = (f"{args.model}: source digits 0-4 -> target digits 5-9; {args.finetune_steps} steps, "
             f"lr {args.lr:g}, new head; {len(args.seeds)} seeds")
    try:
        plot(args.plot, results, args.budgets, args.shots, title)
    except ImportError:  # the tables above are the result; the plot needs the bench extra
        print(f"plot {args.plot} not drawn: matplotlib is not installed (pip install -e .[bench])", file=sys.stderr)
    raw = args.plot.with_suffix(".json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({
        "settings": settings,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "architectures": [{"method": a.method, "budget": a.budget, "seed": s,
                           "macs_fraction": a.macs_fraction, "params": a.params,
                           "source_accuracy": a.source_accuracy}
                          for (_, _, s), a in archs.items()],
        "accuracy": {n: {str(k): v for k, v in per.items()} for n, per in results.items()},
        "seconds": seconds,
    }, indent=2))
    console.print(f"plot: {args.plot}\nraw results: {raw}", highlight=False)


if __name__ == "__main__":
    main()
