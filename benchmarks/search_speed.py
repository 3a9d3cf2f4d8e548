"""Search speed: median time of one DARP search step over one plain training step of the proxy.

A search step (darp_search's loop body: gate sampling, gated forward/backward, optimiser step and, on
logit steps, the expected-cost penalty and the dual update) is timed through darp_search's own
`on_step` callback, so the search runs unchanged; a training step (forward/backward/Adam, no gates)
through train_steps' callback. Same proxy, data, loss (cross-entropy on the source train split) and
batch. Goal: ratio <= 1.5.

Run from the repository root:
`python -m benchmarks.search_speed [--steps 20] [--rounds 3] [--profile [MODEL ...]]`.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from darp_onnx.cost import CostModel
from darp_onnx.groups import analyse
from darp_onnx.load.input_shapes import resolve_input_shapes
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.search import DarpConfig, darp_search, make_budget
from darp_onnx.search.loss import TaskLoss
from darp_onnx.search.relax import keep_probabilities
from darp_onnx.training.dataset import load_dataset
from darp_onnx.training.steps import train_steps

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DATA = SAMPLES / "data" / "digits_source.npz"
MODELS = ("resnet", "mobilenetv3", "yolov8", "vit")
GOAL = 1.5


class Clock:
    """Callback that records the time of each call; step durations are the gaps between calls (the
    first step, which includes the loop's set-up, is dropped)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.kinds: list[bool] = []  # True for a logit step

    def __call__(self, record=None, *_args) -> None:
        self.stamps.append(time.perf_counter())
        self.kinds.append(isinstance(record, dict) and "expected_cost" in record)

    def durations(self) -> list[tuple[float, bool]]:
        return [(b - a, k) for a, b, k in zip(self.stamps, self.stamps[1:], self.kinds[1:], strict=False)]


def setup(name: str, budget_fraction: float):
    model = load_model(SAMPLES / f"{name}.onnx")
    shapes = resolve_input_shapes(model, {})
    analysis = analyse(model)
    cost_model = CostModel(model, analysis, shapes)
    budget = make_budget(cost_model, target_flops=budget_fraction)
    dataset = load_dataset(DATA, model, split="train")
    proxy = build_proxy(model, source=name)
    return model, analysis, cost_model, budget, dataset, proxy, TaskLoss(labels=dataset.labels)


def time_search(proxy, analysis, cost_model, budget, dataset, loss_fn, steps, batch, seed) -> Clock:
    clock = Clock()
    config = DarpConfig(steps=steps, batch_size=batch, seed=seed)
    darp_search(copy.deepcopy(proxy), analysis, cost_model, budget, dataset, loss_fn, config, on_step=clock)
    return clock


def time_train(proxy, dataset, loss_fn, steps, batch, seed) -> Clock:
    clock = Clock()
    train_steps(copy.deepcopy(proxy), dataset, loss_fn, steps=steps, lr=1e-3, batch_size=batch, seed=seed,
                on_step=clock)
    return clock


def time_expected_cost(cost_model: CostModel, analysis, repeats: int = 20) -> float:
    """Median seconds of one expected-MACs evaluation plus its backward, at the init logits."""
    times = []
    for _ in range(repeats):
        theta = {g.id: torch.full((g.size,), 3.0, requires_grad=True) for g in analysis.prunable()}
        start = time.perf_counter()
        probs = {gid: keep_probabilities(th, 1.0) for gid, th in theta.items()}
        cost_model.expected_macs(probs).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, steps: int, rounds: int, batch: int, budget: float) -> dict[str, float]:
    _, analysis, cost_model, bud, dataset, proxy, loss_fn = setup(name, budget)
    # warm-up: first calls pay for allocations and lazy initialisation
    time_train(proxy, dataset, loss_fn, 3, batch, 0)
    time_search(proxy, analysis, cost_model, bud, dataset, loss_fn, 3, batch, 0)
    search, train = [], []
    for r in range(rounds):  # interleaved so machine noise hits both alike
        search += time_search(proxy, analysis, cost_model, bud, dataset, loss_fn, steps, batch, r).durations()
        train += [d for d, _ in time_train(proxy, dataset, loss_fn, steps, batch, r).durations()]
    all_search = [d for d, _ in search]
    weight = [d for d, k in search if not k]
    logit = [d for d, k in search if k]
    search_ms = statistics.median(all_search) * 1e3
    train_ms = statistics.median(train) * 1e3
    return {
        "groups": len(analysis.prunable()),
        "search_ms": search_ms,
        "weight_ms": statistics.median(weight) * 1e3 if weight else float("nan"),
        "logit_ms": statistics.median(logit) * 1e3 if logit else float("nan"),
        "train_ms": train_ms,
        "ratio": search_ms / train_ms,
        "mean_ratio": statistics.mean(all_search) / statistics.mean(train),
        "cost_ms": time_expected_cost(cost_model, analysis) * 1e3,
    }


def profile(name: str, steps: int, batch: int, budget: float, top: int) -> str:
    _, analysis, cost_model, bud, dataset, proxy, loss_fn = setup(name, budget)
    profiler = cProfile.Profile()
    profiler.enable()
    time_search(proxy, analysis, cost_model, bud, dataset, loss_fn, steps, batch, 0)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved search/train runs per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--budget", type=float, default=0.5, help="MACs fraction the search aims at")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--profile", nargs="*", choices=MODELS, default=None, metavar="MODEL",
                        help="cProfile the search of these models (no names: those over the goal)")
    parser.add_argument("--top", type=int, default=15, help="rows of each profile to print")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=140)
    table = Table(title=f"DARP search step vs plain training step, batch {args.batch_size}, CPU, "
                        f"{torch.get_num_threads()} thread(s), {args.rounds}x{args.steps} steps each")
    for column in ("model", "groups", "search ms (median)", "weight step ms", "logit step ms",
                   "train ms (median)", f"ratio (goal <= {GOAL})", "ratio of means", "E[MACs] fwd+bwd ms"):
        table.add_column(column, justify="right")
    over = []
    for name in args.models:
        r = measure(name, args.steps, args.rounds, args.batch_size, args.budget)
        table.add_row(name, str(r["groups"]), f"{r['search_ms']:.1f}", f"{r['weight_ms']:.1f}",
                      f"{r['logit_ms']:.1f}", f"{r['train_ms']:.1f}", f"{r['ratio']:.2f}",
                      f"{r['mean_ratio']:.2f}", f"{r['cost_ms']:.2f}")
        if r["ratio"] > GOAL:
            over.append(name)
    console.print(table)
    if args.profile is not None:
        for name in args.profile or over:
            console.print(f"[bold]cProfile of darp_search on {name} ({args.steps} steps), by own time[/bold]")
            console.print(profile(name, args.steps, args.batch_size, args.budget, args.top), markup=False)


if __name__ == "__main__":
    main()
