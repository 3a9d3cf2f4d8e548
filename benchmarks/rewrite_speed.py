"""Rewrite speed: load (shape inference), analyse, CostModel and rewrite time against node count, on
generated CNN-like graphs (residual blocks, Split/Concat blocks, width changes) of 100 to 5,000 nodes.
Goal: analyse + rewrite under 2 s at 1,000 nodes, growth close to linear (log-log slope near 1).

Run from the repository root: `python -m benchmarks.rewrite_speed [--sizes 100,250,500,1000,2000,5000]
[--repeats 5] [--seed 0] [--branch-drop 0.0]`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from darp_onnx.cost import CostModel, count_graph
from darp_onnx.groups import analyse
from darp_onnx.load.io import load_model
from darp_onnx.rewrite import rewrite

IR_VERSION = 10  # onnxruntime reads IR versions up to 10 or so; onnx's helper writes its newest by default
OPSET = 18
WIDTHS = (8, 12, 16)
STAGES = ("load", "analyse", "cost", "rewrite")


class _Builder:
    """Appends nodes and initializers with unique names."""

    def __init__(self, rng: np.random.Generator, in_channels: int) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shared: set[str] = set()
        self.k = 0

    def _name(self, stem: str) -> str:
        self.k += 1
        return f"{stem}_{self.k}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        name = self._name(op.lower())
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def init(self, value: np.ndarray, stem: str) -> str:
        name = self._name(stem)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def shared_init(self, value: np.ndarray, name: str) -> str:
        """One initializer read by many nodes (as the dynamo exporter shares split-size constants)."""
        if name not in self.shared:
            self.shared.add(name)
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * (2.0 / (cin * k * k)) ** 0.5).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.01).astype(np.float32)
        return self.node("Conv", [x, self.init(w, "w"), self.init(b, "b")], kernel_shape=[k, k],
                         pads=[k // 2] * 4)[0]

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])[0]

    # blocks ---------------------------------------------------------------------------------------
    def residual(self, x: str, c: int) -> str:  # 5 nodes
        y = self.conv(self.relu(self.conv(x, c, c, 3)), c, c, 3)
        return self.relu(self.node("Add", [y, x])[0])

    def split_concat(self, x: str, c: int) -> str:  # 7 nodes, C2f-like
        t = self.conv(x, c, c, 1)
        half = c // 2
        sizes = self.shared_init(np.array([half, half], dtype=np.int64), f"split_sizes_{c}")
        a, b = self.node("Split", [t, sizes], n_out=2, axis=1)
        m = self.relu(self.conv(b, half, half, 3))
        cat = self.node("Concat", [a, b, m], axis=1)[0]
        return self.relu(self.conv(cat, 3 * half, c, 1))

    def transition(self, x: str, cin: int, cout: int) -> str:  # 2 nodes
        return self.relu(self.conv(x, cin, cout, 3))


# cycle of (block, node count); a transition changes the width to the next of WIDTHS
PATTERN = (("residual", 5), ("residual", 5), ("split_concat", 7), ("residual", 5), ("transition", 2))


def make_cnn(n_nodes: int, seed: int = 0, in_channels: int = 3, size: int = 8, classes: int = 10
             ) -> onnx.ModelProto:
    """A CNN-like model with exactly `n_nodes` nodes (at least 7): stem Conv+Relu, a cycle of residual,
    Split/Concat and width-changing blocks, padding Relus, then GlobalAveragePool+Flatten+Gemm."""
    if n_nodes < 7:
        raise ValueError("need at least 7 nodes")
    rng = np.random.default_rng(seed)
    b = _Builder(rng, in_channels)
    width_i = 0
    c = WIDTHS[width_i]
    x = b.transition("input", in_channels, c)
    remaining = n_nodes - 2 - 3
    step = 0
    while remaining > 0:
        kind, cost = PATTERN[step % len(PATTERN)]
        step += 1
        if cost > remaining:
            x = b.relu(x)
            remaining -= 1
            continue
        if kind == "residual":
            x = b.residual(x, c)
        elif kind == "split_concat":
            x = b.split_concat(x, c)
        else:
            width_i = (width_i + 1) % len(WIDTHS)
            x, c = b.transition(x, c, WIDTHS[width_i]), WIDTHS[width_i]
        remaining -= cost
    pooled = b.node("GlobalAveragePool", [x])[0]
    flat = b.node("Flatten", [pooled], axis=1)[0]
    fc_w = (rng.standard_normal((classes, c)) * 0.1).astype(np.float32)
    fc_b = np.zeros(classes, dtype=np.float32)
    b.nodes.append(helper.make_node("Gemm", [flat, b.init(fc_w, "fc_w"), b.init(fc_b, "fc_b")], ["logits"],
                                    name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, f"cnn_{n_nodes}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, in_channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    assert len(model.graph.node) == n_nodes, (len(model.graph.node), n_nodes)
    return model


def random_masks(analysis, rng: np.random.Generator, branch_drop: float) -> dict[int, np.ndarray]:
    """A random keep mask per prunable group: channel groups keep a random subset of 1..size units;
    residual branches are kept, or dropped with probability `branch_drop`."""
    masks = {}
    for group in analysis.prunable():
        if group.unit.droppable:
            masks[group.id] = np.array([rng.random() >= branch_drop] * group.size, dtype=bool)
            continue
        keep = np.zeros(group.size, dtype=bool)
        n_keep = int(rng.integers(max(1, group.min_keep), group.size + 1))
        keep[rng.choice(group.size, n_keep, replace=False)] = True
        masks[group.id] = keep
    return masks


def _timed(fn: Callable[..., object], *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def measure(n_nodes: int, repeats: int, seed: int, branch_drop: float, workdir: Path) -> dict[str, object]:
    model = make_cnn(n_nodes, seed)
    path = workdir / f"cnn_{n_nodes}.onnx"
    onnx.save_model(model, str(path))
    shapes = {"input": (1, 3, 8, 8)}
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    for r in range(repeats):
        t, loaded = _timed(load_model, path)
        times["load"].append(t)
        t, analysis = _timed(analyse, loaded)
        times["analyse"].append(t)
        t, cost = _timed(CostModel, loaded, analysis, shapes)
        times["cost"].append(t)
        masks = random_masks(analysis, np.random.default_rng(seed + r), branch_drop)
        t, pruned = _timed(rewrite, loaded, analysis, masks)
        times["rewrite"].append(t)
    # checks, untimed: the pruned model runs, has the right output shape and costs what was predicted
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(pruned.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.random.default_rng(seed).standard_normal((1, 3, 8, 8),
                                                                                      dtype=np.float32)})
    counted = count_graph(pruned, shapes)
    ok = out.shape == (1, 10) and np.isfinite(out).all() and counted.macs == cost.macs(masks) \
        and counted.params == cost.params(masks)
    return {
        "nodes": n_nodes,
        "nodes_after": len(pruned.graph.node),
        "groups": len(analysis.prunable()),
        "branches": len(analysis.branches),
        "macs_kept": cost.macs(masks) / cost.full_macs,
        "repeats": repeats,
        "ok": ok,
        **{s: statistics.median(v) for s, v in times.items()},
    }


def slope(rows: list[dict], key: str) -> float:
    """Least-squares slope of log(time) against log(nodes)."""
    x = np.log([r["nodes"] for r in rows])
    y = np.log([max(r[key], 1e-9) for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def pair_slope(a: dict, b: dict, key: str) -> float:
    return math.log(max(b[key], 1e-9) / max(a[key], 1e-9)) / math.log(b["nodes"] / a["nodes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,1000,2000,5000",
                        help="node counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5,
                        help="repeats at <= 1000 nodes (median taken); scaled by 1000/nodes above, >= 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--branch-drop", type=float, default=0.0,
                        help="probability of dropping each residual branch in the random masks")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            repeats = max(1, min(args.repeats, round(args.repeats * 1000 / n)))
            row = measure(n, repeats, args.seed, args.branch_drop, Path(tmp))
            row["ar"] = row["analyse"] + row["rewrite"]
            row["total"] = sum(row[s] for s in STAGES)
            rows.append(row)

    table = Table(title=f"analysis + rewrite time vs node count (generated CNNs, seed {args.seed}, "
                        f"branch drop {args.branch_drop:g}; median seconds)")
    for column in ("nodes", "groups", "branches", "reps", "load (shape inf.) s", "analyse s", "CostModel s",
                   "rewrite s", "analyse+rewrite s", "all 4 s", "all 4 s / 1000 nodes", "MACs kept",
                   "nodes after", "checks"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["nodes"]), str(r["groups"]), str(r["branches"]), str(r["repeats"]),
                      f"{r['load']:.3f}", f"{r['analyse']:.3f}", f"{r['cost']:.3f}", f"{r['rewrite']:.3f}",
                      f"{r['ar']:.3f}", f"{r['total']:.3f}", f"{r['total'] * 1000 / r['nodes']:.3f}",
                      f"{r['macs_kept']:.2f}", str(r["nodes_after"]), "ok" if r["ok"] else "FAILED")
    console = Console(width=200)  # wide tables stay whole when stdout is not a terminal
    console.print(table)

    if len(rows) >= 2:
        keys = (*STAGES, "ar", "total")
        growth = Table(title="growth exponent (log-log slope of time against nodes; 1.0 = linear)")
        growth.add_column("sizes", justify="right")
        for column in ("load", "analyse", "CostModel", "rewrite", "analyse+rewrite", "all 4"):
            growth.add_column(column, justify="right")
        for a, b in zip(rows[:-1], rows[1:], strict=True):
            growth.add_row(f"{a['nodes']} -> {b['nodes']}", *(f"{pair_slope(a, b, k):.2f}" for k in keys))
        growth.add_row("fit, all sizes", *(f"{slope(rows, k):.2f}" for k in keys))
        console.print(growth)
    at_1000 = next((r for r in rows if r["nodes"] == 1000), None)
    if at_1000 is not None:
        verdict = "meets" if at_1000["ar"] < 2.0 else "MISSES"
        console.print(f"analyse + rewrite at 1000 nodes: {at_1000['ar']:.3f} s ({verdict} the 2 s goal)")


if __name__ == "__main__":
    main()
