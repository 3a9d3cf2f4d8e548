"""Rich progress on stderr for the search and the recovery fine-tune."""

from __future__ import annotations

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from darp_onnx.cli.output import console_err


class RichProgress:
    """Progress bars with an info column on stderr, shown only when `enabled`; use as a context."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console_err, transient=False,
        )

    def __enter__(self):
        return self

    def add_task(self, description: str, **fields):
        """A new bar; the display starts with the first one (an early error then prints nothing more)."""
        if not self._progress.live.is_started:
            self._progress.start()
        return self._progress.add_task(description, **fields)

    def __exit__(self, exc_type, *exc) -> None:
        if self.enabled and self._progress.live.is_started:
            if exc_type is not None:  # an error ends the command: leave only its one line on stderr
                self._progress.live.transient = True
            self._progress.stop()


class SearchProgress(RichProgress):
    """`update(stage, info)` is the `progress` callback of `prune()`."""

    def __init__(self, *, enabled: bool, total: int, finetune_total: int) -> None:
        super().__init__(enabled=enabled)
        self._search = self._finetune = None
        self._totals = (total, finetune_total)
        self._expected = float("nan")

    def update(self, stage: str, info: dict[str, float]) -> None:
        if not self.enabled:
            return
        if stage == "plan":
            self._totals = (int(info["search_steps"]), int(info["finetune_steps"]))
            console_err.print(_plan_line(info))
        elif stage == "stage":
            replanned = ""
            if info["name"] == "finetune" and "steps" in info:
                if self._totals[1] and int(info["steps"]) != self._totals[1]:  # nsnet2: plan 87, ran 60, then 25
                    replanned = (f", {int(info['steps'])} steps (planned {self._totals[1]}; re-planned from the "
                                 "time left)")
                self._totals = (self._totals[0], int(info["steps"]))
            left = info.get("eta_s")
            name = "no fine-tune steps: the pruned proxy's outputs" if info.get("steps") == 0 else info["name"]
            console_err.print(f"[dim]{name}{replanned}" + ("" if left is None else f" (the run ends in about "
                                                                   f"{_minutes(left)})") + "[/]")
        elif stage == "start":
            console_err.print(
                f"{int(info['groups'])} prunable groups, budget {info['budget_fraction']:.1%} of the full cost"
            )
        elif stage == "search":
            if self._search is None:
                self._search = self.add_task("search", total=self._totals[0], info="")
            self._expected = info.get("expected_cost", self._expected)
            text = (f"loss {info['loss']:.3f}  E\\[cost] {self._expected:.1%}  tau_s {info['tau_sample']:.3f}  "
                    f"tau_p {info['tau_penalty']:.3f}  lambda {info['penalty']:.3f}")
            self._progress.update(self._search, completed=int(info["step"]) + 1, info=text)
        elif stage == "note":
            console_err.print(f"[yellow]{escape(info['message'])}[/]")
        elif stage == "latency":
            console_err.print(f"timing the layers on onnxruntime ({info['device']}) for the latency-aware extraction")
        elif stage == "finetune":
            if self._finetune is None:
                self._finetune = self.add_task("fine-tune", total=self._totals[1] or None, info="")
            # advance by the steps run: `step` is the schedule's position, which runs ahead when the clock does
            # (the bar read 83/83 where 70 steps ran and the JSON said 70)
            self._progress.advance(self._finetune)
            self._progress.update(self._finetune, info=f"loss {info['loss']:.3f}")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _plan_line(info: dict[str, float]) -> str:
    """What the time budget chose, and why."""
    budget = info.get("time_budget_s")
    head = "no time budget" if budget is None else f"time budget {_minutes(budget)}"
    step = info.get("step_seconds")
    measured = "" if step is None else f" (a step takes {step:.2f} s at batch {int(info['batch_size'])})"
    tail = "" if info.get("estimate_s") is None else f"; the run should end in about {_minutes(info['estimate_s'])}"
    if info.get("over_budget") and (budget is None or info.get("estimate_s") is None
                                    or info["estimate_s"] > budget):  # the margin absorbs a small overrun
        tail += (" [yellow](training alone outruns its share of the budget even with the fewest steps: give a longer "
                 "--time-budget)[/]")
    search = f"{int(info['search_steps'])} search + " if info["search_steps"] else ""
    return (f"{head}: {search}{int(info['finetune_steps'])} fine-tune steps at batch "
            f"{int(info['batch_size'])} on {int(info['samples'])} samples{measured}{tail}")
