"""`darp-onnx prune` with image folders, data loaders and the time budget, end to end through the CLI."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import darp_onnx.workflows.plan as plan_module
from darp_onnx.cli.app import app
from tests.training.digits_images import ROOT, write_pngs

RESNET = ROOT / "sample_models" / "resnet.onnx"
FEW = ["--steps", "4", "--finetune-steps", "2", "--batch-size", "4"]
runner = CliRunner()


def _prune(tmp_path, *args):
    result = runner.invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "out.onnx"), "--force", "-q", "--json",
                                 *args])
    return result


def test_image_folder_prunes_and_counts_bad_images(tmp_path):
    write_pngs(tmp_path / "images", 12)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    result = _prune(tmp_path, "--data", str(tmp_path / "images"), "--preprocess", "unit", *FEW)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["data"]["samples"] == 12 and document["data"]["skipped"] == 1
    assert document["data"]["preprocess"]["resize"] == "stretch"
    assert {"data", "plan", "search", "finetune", "validation"} <= set(document["timings"])
    assert document["resources"]["peak_rss_mib"] > 0


def test_preprocess_table_in_config(tmp_path):
    write_pngs(tmp_path / "images", 6)
    config = tmp_path / "prune.toml"
    config.write_text('[preprocess]\npreset = "unit"\nmean = [0.3]\nstd = [0.3]\n', encoding="utf-8")
    result = _prune(tmp_path, "--data", str(tmp_path / "images"), "--config", str(config), *FEW)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["data"]["preprocess"]["mean"] == [0.3]


def test_empty_image_folder_is_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _prune(tmp_path, "--data", str(tmp_path / "empty"), *FEW)
    assert result.exit_code == 1 and "holds no image files" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("spec", ["nowhere.py:load_data", "{loader}:missing"], ids=["bad-path", "bad-function"])
def test_data_loader_errors_are_one_line(tmp_path, spec):
    loader = tmp_path / "loader.py"
    loader.write_text("def load_data():\n    return []\n", encoding="utf-8")
    result = _prune(tmp_path, "--data-loader", spec.format(loader=loader), *FEW)
    assert result.exit_code == 1 and "--data-loader" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_slow_steps_plan_fewer_steps(tmp_path, monkeypatch):
    """A stubbed, slow step time: the time budget plans far fewer than the default 200 + 100 steps, and, as
    the fewest steps at batch 8 (10 s) outrun it, a smaller batch, timed again there (the stub: 0.4 s)."""
    monkeypatch.setattr(plan_module, "measure_step_seconds", lambda *args, **kwargs: 0.4)
    monkeypatch.setattr(plan_module, "measure_forward_seconds", lambda *args, **kwargs: 0.001)
    result = _prune(tmp_path, "--time-budget", "10s", "--max-samples", "16")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["resources"]["plan"]
    assert plan["batch_size"] < 8 and plan["search_steps"] + plan["finetune_steps"] < 60
    assert plan["step_seconds"] == pytest.approx(0.4)


def test_a_budget_far_too_short_is_refused_before_the_search(tmp_path, monkeypatch):
    """Even the fewest steps (25 at 4 s) take five times the 20-second budget: one line, exit 1, nothing
    written, with the budget that would do (the helper's ISNet at 1024x1024 started a 40-minute run against 2)."""
    monkeypatch.setattr(plan_module, "measure_step_seconds", lambda *args, **kwargs: 4.0)
    monkeypatch.setattr(plan_module, "measure_forward_seconds", lambda *args, **kwargs: 0.001)
    result = _prune(tmp_path, "--time-budget", "20s", "--max-samples", "16")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "--time-budget 0.3 min is far too short" in result.stderr
    assert re.search(r"need about [0-9.]+ min; give --time-budget [0-9]+m \(or off\)", result.stderr)
    assert not (tmp_path / "out.onnx").exists()


def test_max_drift_gates_what_is_written(tmp_path):
    """A pipeline's quality gate: over --max-drift, exit 2 and nothing written; 'off' writes it whatever."""
    strict = _prune(tmp_path, "--max-drift", "0", *FEW)
    assert strict.exit_code == 2 and "Traceback" not in strict.stderr
    assert "over --max-drift 0 (the limit asked for); nothing written" in strict.stderr
    assert "the pruned model (" in strict.stderr and "out.onnx" not in strict.stderr  # a path never written
    assert not (tmp_path / "out.onnx").exists()
    details = json.loads(strict.stdout)["error"]["details"]  # what a script needs to decide on a retry
    assert details["max_drift"] == 0 and details["relative_error"] > 0 and details["fidelity_on"]
    assert 0 < details["macs_after"] < details["macs_before"]
    relaxed = _prune(tmp_path, "--max-drift", "off", *FEW)
    assert relaxed.exit_code == 0, relaxed.stderr
    assert (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("value", ["-1", "lots", "nan"])
def test_bad_max_drift_is_one_line(tmp_path, value):
    result = _prune(tmp_path, "--max-drift", value, *FEW)
    assert result.exit_code == 1 and "--max-drift" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_json_document_carries_the_warnings_the_summary_prints(tmp_path):
    from darp_onnx.validation.checks import Fidelity
    from darp_onnx.workflows.advice import written_model_warnings

    result = _prune(tmp_path, "--max-drift", "off", *FEW)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    v = doc["validation"]
    assert doc["warnings"] == written_model_warnings(
        Fidelity(**v["fidelity"]), synthetic=True, latency_ms_before=v["latency_ms_before"],
        latency_ms_after=v["latency_ms_after"])


def test_a_forward_pass_that_slow_refuses_before_a_step_is_timed(tmp_path, monkeypatch):
    """CenterNet at 1024x1024: timing one step took 75 s of a 2-minute budget before the refusal."""
    def no_step(*args, **kwargs):
        raise AssertionError("a training step was timed")

    monkeypatch.setattr(plan_module, "measure_step_seconds", no_step)
    monkeypatch.setattr(plan_module, "measure_forward_seconds", lambda *args, **kwargs: 2.0)
    result = _prune(tmp_path, "--time-budget", "20s", "--max-samples", "16")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "far too short" in result.stderr and "need at least" in result.stderr
    assert "a forward pass takes 2.00 s a sample" in " ".join(result.stderr.split())


def test_an_output_that_keeps_no_positives_is_not_written(tmp_path, monkeypatch):
    """The gate reads the positives measured in validation (CenterNet's heatmap: every peak lost at 0.66)."""
    import darp_onnx.workflows.prune as prune_module
    from darp_onnx.validation.checks import Fidelity

    def dead_heatmap(after, before, labels=None, names=None, classes=True, ids=(), logits=(), linear=()):
        return Fidelity(None, 0.2, positives_output=names[0], positives_kept=0.0)

    monkeypatch.setattr(prune_module, "fidelity", dead_heatmap)
    result = _prune(tmp_path, *FEW)
    assert result.exit_code == 2 and "keeps none of the original's values above 0.5" in result.stderr
    assert not (tmp_path / "out.onnx").exists()
    assert json.loads(result.stdout)["error"]["details"]["positives_kept"] == 0.0


def test_prune_and_validate_say_how_image_files_became_inputs(tmp_path):
    """A folder read in a range the model does not take was fitted and measured on the wrong values without a
    word (opennsfw, BGR 0-255 minus the Caffe mean, fed RGB in [0, 1]); validate could not be told how."""
    write_pngs(tmp_path / "images", 8)
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    result = runner.invoke(app, ["prune", str(RESNET), "-o", str(tmp_path / "out.onnx"), "--force",
                                 "--data", str(tmp_path / "images"), *FEW, "--max-drift", "off"])
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "8 images from" in said and "1 could not be decoded" in said and "preset unit: the default" in said
    checked = runner.invoke(app, ["validate", str(RESNET), str(tmp_path / "out.onnx"), "--data",
                                  str(tmp_path / "images"), "--preprocess", "inception", "--latency-runs", "1",
                                  "--json"])
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["data"]["preprocess"]["chosen"] == "inception: --preprocess"
    told = " ".join(checked.stderr.split())
    assert "8 images from" in told and "1 could not be decoded, first:" in told and "broken.png" in told


def test_training_samples_the_time_budget_leaves_out_are_said(tmp_path, monkeypatch):
    """A Khmer CRNN trained on 38 of 240 samples in silence: the plan's cut is a note, in --json's data too."""
    write_pngs(tmp_path / "images", 40)
    monkeypatch.setattr(plan_module, "measure_step_seconds", lambda *args, **kwargs: 0.01)
    monkeypatch.setattr(plan_module, "measure_forward_seconds", lambda *args, **kwargs: 0.01)
    monkeypatch.setattr(plan_module, "plan_samples", lambda samples, **kwargs: min(samples, 20))
    result = _prune(tmp_path, "--data", str(tmp_path / "images"), "--preprocess", "unit", "--time-budget", "1m",
                    "--holdout", "0.2", "--steps", "4", "--finetune-steps", "2")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["data"]["samples"] == 20
    assert any("training on 20 of your 32 samples" in n and "a longer --time-budget uses more" in n
               for n in document["data"]["notes"])
