"""The progress lines on stderr say when the fine-tune was re-planned (the plan's count is not what ran)."""

from __future__ import annotations

from darp_onnx.cli.progress import SearchProgress


def test_a_replanned_fine_tune_says_so(capsys):
    progress = SearchProgress(enabled=True, total=0, finetune_total=0)
    progress.update("plan", {"search_steps": 174, "finetune_steps": 87, "batch_size": 8, "samples": 64,
                             "time_budget_s": 120.0, "step_seconds": 0.5, "estimate_s": 100.0, "over_budget": False})
    progress.update("stage", {"name": "finetune", "steps": 60, "eta_s": 30.0})
    err = capsys.readouterr().err
    assert "174 search + 87 fine-tune steps" in err
    assert "60 steps (planned 87; re-planned from the time left)" in " ".join(err.split())


def test_a_fine_tune_as_planned_adds_nothing(capsys):
    progress = SearchProgress(enabled=True, total=0, finetune_total=0)
    progress.update("plan", {"search_steps": 20, "finetune_steps": 5, "batch_size": 2, "samples": 16,
                             "time_budget_s": None, "step_seconds": None, "estimate_s": None, "over_budget": False})
    progress.update("stage", {"name": "finetune", "steps": 5})
    assert "re-planned" not in capsys.readouterr().err


def test_the_plan_line_asks_for_more_time_only_when_the_estimate_is_over_the_budget(capsys):
    """The fewest steps outran the training share, but the estimate (1.7 min) was within the 2-minute budget."""
    progress = SearchProgress(enabled=True, total=0, finetune_total=0)
    plan = {"search_steps": 20, "finetune_steps": 5, "batch_size": 2, "samples": 16, "time_budget_s": 120.0,
            "step_seconds": 2.0, "estimate_s": 102.0, "over_budget": True}
    progress.update("plan", plan)
    assert "give a longer" not in capsys.readouterr().err
    progress.update("plan", {**plan, "estimate_s": 168.0})
    assert "give a longer" in " ".join(capsys.readouterr().err.split())


def test_the_fine_tune_bar_counts_the_steps_run_not_the_clock_position():
    progress = SearchProgress(enabled=True, total=0, finetune_total=83)
    with progress:
        for position in (0, 5, 40, 82):  # the schedule's positions when the clock runs ahead: 4 steps ran
            progress.update("finetune", {"step": position, "loss": 0.5})
        task = progress._progress.tasks[0]
    assert (task.completed, task.total) == (4, 83)


def test_a_ranking_plan_counts_fine_tune_steps_only_and_no_fine_tune_says_so(capsys):
    """`--method l1 --finetune-steps 0` printed "31 search + 0 fine-tune steps", then "finetune"."""
    progress = SearchProgress(enabled=True, total=0, finetune_total=0)
    progress.update("plan", {"search_steps": 0, "finetune_steps": 0, "batch_size": 8, "samples": 64,
                             "time_budget_s": 300.0, "step_seconds": 0.5, "estimate_s": 80.0, "over_budget": False})
    progress.update("stage", {"name": "finetune", "steps": 0, "eta_s": 20.0})
    err = " ".join(capsys.readouterr().err.split())
    assert "search" not in err and "time budget 5.0 min: 0 fine-tune steps at batch 8" in err
    assert "no fine-tune steps: the pruned proxy's outputs" in err
