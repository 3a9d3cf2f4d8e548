"""`darp-onnx prune --config FILE.toml`: values apply, flags on the command line win, bad keys are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import darp_onnx.api
from darp_onnx.cli.app import app
from darp_onnx.errors import BadInputError
from darp_onnx.workflows.config import BudgetConfig, PruneConfig

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "sample_models" / "resnet.onnx"

runner = CliRunner()

CONFIG = """
method = "l1"
target-flops = 0.25
steps = 4
finetune_steps = 2
input-shape = ["input=1x1x32x32"]
hard-gates = true
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "prune.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def captured(monkeypatch):
    """Replace the library's prune with one that records the PruneConfig it gets and stops."""
    calls: list[PruneConfig] = []

    def fake_prune(model, config, **kwargs):
        calls.append(config)
        raise BadInputError("stopped by the test")

    monkeypatch.setattr(darp_onnx.api, "prune", fake_prune)
    return calls


def test_config_values_reach_prune(tmp_path, captured):
    result = runner.invoke(app, ["prune", str(RESNET), "--config", str(_config(tmp_path))])
    assert result.exit_code == 1 and "stopped by the test" in result.stderr
    config = captured[0]
    assert config.search.method == "l1" and config.budget == BudgetConfig("macs", 0.25)
    assert config.search.steps == 4 and config.recovery.steps == 2  # '-' and '_' both accepted
    assert config.io.input_shapes == {"input": (1, 1, 32, 32)}
    assert config.search.hard_gates is True


def test_command_line_flags_win(tmp_path, captured):
    args = ["prune", str(RESNET), "--config", str(_config(tmp_path)), "--target-flops", "0.5",
            "--method", "random", "--no-hard-gates", "--input-shape", "input=2x1x32x32"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.stderr
    config = captured[0]
    assert config.budget == BudgetConfig("macs", 0.5) and config.search.method == "random"
    assert config.search.hard_gates is False and config.io.input_shapes == {"input": (2, 1, 32, 32)}
    assert config.search.steps == 4  # still from the file


def test_unknown_key_names_it_and_lists_the_valid_ones(tmp_path):
    path = _config(tmp_path, 'method = "l1"\ntarget_flop = 0.3\n')
    result = runner.invoke(app, ["prune", str(RESNET), "--config", str(path)])
    assert result.exit_code == 1
    assert "unknown key 'target_flop'" in result.stderr
    assert "target-flops" in result.stderr and "finetune-steps" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [("steps = \"many\"\n", "key 'steps'"), ("steps = \n", "not valid TOML")],
)
def test_bad_values_and_bad_toml_are_bad_input(tmp_path, text, message):
    result = runner.invoke(app, ["prune", str(RESNET), "--config", str(_config(tmp_path, text))])
    assert result.exit_code == 1 and message in result.stderr and "prune.toml" in result.stderr


def test_missing_config_file(tmp_path):
    result = runner.invoke(app, ["prune", str(RESNET), "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 1 and "no such config file" in result.stderr


@pytest.mark.slow
def test_end_to_end_config_and_override(tmp_path):
    out = tmp_path / "pruned.onnx"
    path = _config(tmp_path, CONFIG.replace("hard-gates = true", f"output = '{out.as_posix()}'"))
    args = ["prune", str(RESNET), "--config", str(path), "--target-flops", "0.5", "--json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["method"] == "l1" and doc["output"] == str(out) and out.is_file()
    assert 0.45 < doc["flops_after"] / doc["flops_before"] <= 0.5
