"""The prune workflow as stages over one PruneConfig: each stage alone, timings, settings in one place,
errors that name the parameter (Python) or the flag (CLI), reports and diffs from the result."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import darp_onnx
from darp_onnx.cli.app import app
from darp_onnx.cost import count_graph
from darp_onnx.errors import OptionError
from darp_onnx.workflows.config import BudgetConfig, ExtractionConfig, PruneConfig, prune_config
from darp_onnx.workflows.prune import analyse_costs, budget_for, extract, load, prune, rewrite_model, score
from darp_onnx.workflows.results import STAGES

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
RESNET = SAMPLES / "resnet.onnx"
FAST = {"search_steps": 4, "finetune_steps": 2, "batch_size": 8, "synthetic_samples": 16, "latency_runs": 2}
runner = CliRunner()


def test_prune_keywords_are_the_config_builders_with_the_same_defaults():
    built = inspect.signature(prune_config).parameters
    taken = {n: p for n, p in inspect.signature(prune).parameters.items()
             if n not in ("model_or_path", "config", "progress")}
    assert taken.keys() == built.keys()
    assert all(taken[n].default == built[n].default for n in built)
    assert prune_config() == PruneConfig()


def test_cli_defaults_are_the_config_defaults():
    from darp_onnx.cli.commands.prune import prune_command

    defaults = {p.name: p.default for p in inspect.signature(prune_command).parameters.values()}
    config = PruneConfig()
    assert defaults["steps"] == config.search.steps and defaults["finetune_steps"] == config.recovery.steps
    assert defaults["lr"] == config.recovery.lr and defaults["search_lr"] == config.search.lr
    assert defaults["batch_size"] == config.search.batch_size and defaults["method"] == config.search.method
    assert defaults["tau_sample"] == "{}:{}".format(*config.search.tau_sample)
    assert defaults["latency_weight"] == config.extraction.latency_weight and defaults["seed"] == config.seed


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"target_flops": -1.0}, "target_flops"),
    ({"target_latency": 2.0}, "target_latency"),
    ({"method": "magic"}, "method"),
    ({"channel_multiple": "eight"}, "channel_multiple"),
    ({"latency_weight": -1.0}, "latency_weight"),
    ({"device": "tpu"}, "device"),
    ({"tau_sample": (0.5, -1.0)}, "tau_sample"),
])
def test_python_errors_name_the_parameter_not_the_flag(kwargs, parameter):
    with pytest.raises(OptionError) as caught:
        prune_config(**kwargs)
    assert caught.value.parameter == parameter and str(caught.value).startswith(parameter)
    assert "--" not in str(caught.value)


def test_the_cli_names_its_flag_for_the_same_error(tmp_path):
    result = runner.invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "o.onnx"), "--target-flops", "-1",
                                 "-q"])
    assert result.exit_code == 1 and "--target-flops must be positive" in result.output
    result = runner.invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "o.onnx"), "--steps", "2",
                                 "--finetune-steps", "0", "--method", "l1", "--target-flops", "1e-6", "-q"])
    assert result.exit_code == 1 and "--target-flops: a budget of" in result.output


def test_explicit_finetune_steps_stay_for_a_baseline(tmp_path):
    """A baseline gets the search's unused steps as fine-tune steps unless fine-tune steps alone were asked
    for: `--method l1 --finetune-steps 0` ran 186 fine-tune steps on a BlazeFace."""
    result = prune(RESNET, method="l1", target_flops=0.6, finetune_steps=0, synthetic_samples=8, latency_runs=1,
                   write=False, time_budget=30, max_drift="off")
    assert result.finetune_steps == 0
    assert result.resources["plan"]["search_steps"] == 0  # its plan counted 31 search steps that never ran
    equal_budget = prune(RESNET, method="l1", target_flops=0.6, search_steps=3, finetune_steps=1,
                         synthetic_samples=8, latency_runs=1, write=False, max_drift="off")  # steps, not fit
    assert equal_budget.finetune_steps == 4  # search steps asked for too: the benchmarks' equal budget


def test_config_and_keywords_do_not_mix():
    with pytest.raises(OptionError, match="^target_flops: give settings either"):
        prune(RESNET, PruneConfig(), target_flops=0.3)


def test_config_is_frozen_and_checked_when_changed():
    config = PruneConfig()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]
    with pytest.raises(OptionError, match="^method "):
        replace(config, search=replace(config.search, method="nope"))


@pytest.fixture(scope="module")
def l1_run():
    config = prune_config(method="l1", write=False, channel_multiple=1, device="cpu", **FAST)
    run = analyse_costs(load(RESNET, config))
    return run, score(run)


def test_stages_run_alone_without_data_or_proxy(l1_run):
    run, scores = l1_run
    assert run.proxy is None and run.dataset is None  # score/extract/rewrite need neither for a baseline
    extraction = extract(run, scores, budget=budget_for(run, BudgetConfig("params", 0.6)))
    pruned = rewrite_model(run, extraction.masks)
    counted = count_graph(pruned)
    assert counted.params == run.cost_model.params(extraction.masks) <= 0.6 * run.cost_model.full_params
    assert {"load", "analysis", "shapes", "search", "extraction", "rewrite"} <= set(run.timings)
    assert all(seconds >= 0 for seconds in run.timings.values())


def test_extract_takes_other_options(l1_run):
    run, scores = l1_run
    aligned = extract(run, scores, options=ExtractionConfig(channel_multiple=8))
    assert aligned.channel_multiple == 8 and aligned.ranking == "score"
    for group in run.analysis.prunable():
        kept = int(aligned.masks[group.id].sum())
        if group.kind == "channel":
            assert kept == group.size or kept % 8 == 0


@pytest.fixture(scope="module")
def pruned_object(tmp_path_factory):
    """A prune of a ModelProto input (no path on disk), written to a temporary file."""
    model = onnx.load(str(RESNET))
    out = tmp_path_factory.mktemp("object") / "p.onnx"
    return prune(model, output=out, method="l1", target_flops=0.5, **FAST)


def test_result_is_typed_and_timed(pruned_object):
    result = pruned_object
    assert result.input == "<model>" and Path(result.output).is_file()
    assert result.validation.max_abs_diff < 1e-3 and result.validation.provider == "CPUExecutionProvider"
    assert result.extraction.ranking == "score" and result.extraction.masks.keys() == result.masks.keys()
    assert list(result.timings) == [s for s in STAGES if s in result.timings]  # in the order they ran
    assert {"load", "analysis", "shapes", "reference_outputs", "search", "extraction", "finetune", "rewrite",
            "validation", "write"} <= set(result.timings)
    doc = json.loads(json.dumps(result.to_dict(), default=str))
    assert doc["timings"] == pytest.approx(dict(result.timings))
    assert doc["validation"]["fidelity"]["relative_error"] == result.validation.fidelity.relative_error
    assert doc["validation"]["provider"] == result.validation["provider"]  # read by key as before


def test_report_of_a_model_object_needs_no_file(pruned_object, tmp_path):
    from darp_onnx.api import write_prune_report

    paths = write_prune_report(pruned_object, tmp_path / "reports")
    doc = json.loads(Path(paths["json"]).read_text())
    assert doc["summary"]["macs"]["after"] == pruned_object.flops_after
    assert doc["summary"]["macs"]["before"] == pruned_object.flops_before
    assert doc["method"] == "l1" and doc["provider"] == "CPUExecutionProvider"


def test_diff_is_part_of_the_api(pruned_object):
    diff = darp_onnx.diff(RESNET, pruned_object.model)
    assert diff.label_before == str(RESNET) and diff.label_after == "<model>"
    assert diff.macs.after == pruned_object.flops_after and diff.macs.before == pruned_object.flops_before


def test_reusing_the_channels_removed_count(pruned_object):
    removed = sum(int(np.size(m) - np.count_nonzero(m)) for g, m in pruned_object.masks.items()
                  if g in {row["id"] for row in pruned_object.groups if row["kind"] == "channel"})
    assert pruned_object.channels_removed == removed


def test_a_fine_tune_that_overflows_or_raises_the_loss_is_dropped():
    """The weights before the fine-tune are kept when it makes the outputs overflow or ends with a higher
    loss over the data than it started from (PicoDet's layout detector, data-free: 0.76 -> 1.49)."""
    from types import SimpleNamespace

    import torch

    from darp_onnx.workflows.prune import _fine_tune_harm

    run = SimpleNamespace(dataset=[0] * 4, loss_fn=lambda outputs, idx: ((outputs[0][idx] - 1.0) ** 2).mean(),
                          reference=None)
    assert _fine_tune_harm(run, [np.ones((4, 2), np.float32)], 0.5) is None
    assert "raised the loss over the data (0.5 -> 1)" in _fine_tune_harm(run, [np.zeros((4, 2), np.float32)], 0.5)
    assert "overflow" in _fine_tune_harm(run, [np.full((4, 2), np.inf, np.float32)], 0.5)
    holes = np.ones((4, 2), np.float32)
    holes[:, 1] = np.nan  # where the original itself writes NaN: not an overflow
    run.reference = [holes.copy()]
    run.loss_fn = lambda outputs, idx: torch.nan_to_num(outputs[0][idx] - 1.0).square().mean()
    assert _fine_tune_harm(run, [holes], 0.5) is None
    assert "overflow" in _fine_tune_harm(run, [np.full((4, 2), np.nan, np.float32)], 0.5)


def _diverge_from_call(monkeypatch, module, first: int) -> None:
    """`module`'s DivergenceGuard says the loss diverged from its `first`-th call (0-based) on, and stops."""
    real = module.DivergenceGuard

    def diverging(optimizer):
        guard = real(optimizer)
        calls = iter(range(10**6))
        guard.diverged = lambda loss: next(calls) >= first
        guard.go_on = lambda: False
        return guard

    monkeypatch.setattr(module, "DivergenceGuard", diverging)


def test_a_fine_tune_stopped_by_divergence_says_so_and_counts_the_steps_it_ran(monkeypatch):
    """A face-mesh prune reported 51 fine-tune steps in --json after 3 ran (the loss diverged), and said
    nothing."""
    import darp_onnx.training.steps as steps_module

    _diverge_from_call(monkeypatch, steps_module, 3)  # the loss of the fourth step: blown up
    notes = []
    result = prune(RESNET, method="l1", target_flops=0.6, finetune_steps=8, synthetic_samples=8, latency_runs=1,
                   write=False, max_drift="off", progress=lambda stage, info: notes.append(info.get("message", "")))
    assert result.finetune_steps == 3
    assert any("stopped after 3 of its 8 steps: its loss diverged" in n for n in notes)


def test_a_search_stopped_by_divergence_says_so(monkeypatch):
    """BlazeFace with data: the search ran 14 of its 106 planned steps (its loss diverged) and only --json's
    search_steps showed it; a fine-tune stopping so says it."""
    import darp_onnx.search.darp as darp_module

    _diverge_from_call(monkeypatch, darp_module, 2)
    notes = []
    result = prune(RESNET, target_flops=0.6, search_steps=6, finetune_steps=0, synthetic_samples=8, latency_runs=1,
                   write=False, max_drift="off", progress=lambda stage, info: notes.append(info.get("message", "")))
    assert result.search_steps == 3  # a Taylor pass for the starting logits, then two steps
    assert any("the search stopped after 3 of its 6 steps: its loss diverged" in n for n in notes)


def test_weights_a_search_wrecked_are_not_kept_but_its_choice_is():
    """HED (a VGG without BatchNorm fed 0-255 pixels less the mean) came out of the search at the default rates
    with an error of 1.000 on real crops; its own weights under the same masks kept the edges."""
    import torch

    from darp_onnx.workflows.prune import prepare_data, recover

    notes = []
    config = prune_config(write=False, device="cpu", channel_multiple=1, **{**FAST, "finetune_steps": 0})
    run = prepare_data(analyse_costs(load(RESNET, config, progress=lambda s, i: notes.append(i.get("message")))))
    scores = score(run)
    masks = extract(run, scores).masks
    searched = {k: v.clone() for k, v in run.proxy.state_dict().items()}
    assert recover(run, scores, masks).steps == 0 and not any(n and "weight updates" in n for n in notes)
    assert all(torch.equal(v, searched[k]) for k, v in run.proxy.state_dict().items())  # the search's, kept
    run.presearch_weights = before = {k: v.clone() for k, v in searched.items()}
    with torch.no_grad():  # now the search blew the weights up
        for weight in run.proxy.parameters():
            weight.mul_(50.0)
    recover(run, scores, masks)
    assert any(n and n.startswith("the search's weight updates raised the loss") for n in notes)
    assert all(torch.equal(v, before[k]) for k, v in run.proxy.state_dict().items())


@pytest.mark.parametrize(("real", "searched_loss", "kept"), [(True, 1.9, "searched"), (True, 2.1, "before"),
                                                             (True, float("nan"), "before"), (False, 1.1, "before")])
def test_the_search_weights_go_on_unless_their_loss_is_over_twice_the_weights_before_it(monkeypatch, real,
                                                                                         searched_loss, kept):
    """Measured before the fine-tune the loss misjudges the searched weights: the sample ResNet at 15% MACs had
    1.77x the loss after its search and ended 1.8 points better for keeping them. Data-free, any rise sends them
    back (trained on synthetic inputs, they drift from what the original knows)."""
    import torch

    import darp_onnx.workflows.prune as prune_module

    notes = []
    config = prune_config(write=False, device="cpu", channel_multiple=1, **{**FAST, "finetune_steps": 0})
    run = prune_module.prepare_data(analyse_costs(load(RESNET, config, progress=lambda s, i: notes.append(
        i.get("message")))))
    scores = score(run)
    masks = extract(run, scores).masks
    if real:
        run.dataset.source = "samples.npz"  # what --data gives: not synthetic
    searched = {k: v.clone() for k, v in run.proxy.state_dict().items()}
    run.presearch_weights = before = {k: v + 1.0 if v.is_floating_point() else v for k, v in searched.items()}
    losses = iter([searched_loss, 1.0])  # the searched weights' loss, then the weights' before the search
    monkeypatch.setattr(prune_module, "_loss_of", lambda run, outputs: next(losses, 1.0))
    prune_module.recover(run, scores, masks)
    expected = searched if kept == "searched" else before
    assert all(torch.equal(v, expected[k]) for k, v in run.proxy.state_dict().items())
    assert any(n and "weight updates raised the loss" in n for n in notes) == (kept == "before")
