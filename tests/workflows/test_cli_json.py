"""`darp-onnx prune --json` keeps every key it printed before the staged workflow, and adds `timings`, `data`
(where the samples came from), `resources` (time budget, plan, memory, peak RSS), `warnings` and, in
`validation`, `fidelity_on` (which samples the output error was measured on) and, in its `fidelity`, the
worst output's error, the positives kept and the variation kept (validation/outputs_kept.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.workflows.results import STAGES

RESNET = Path(__file__).resolve().parents[2] / "sample_models" / "resnet.onnx"
BEFORE_KEYS = ["input", "output", "method", "metric", "budget", "flops_before", "flops_after", "params_before",
               "params_after", "nodes_before", "nodes_after", "channels_removed", "groups", "validation", "device",
               "seed", "search_steps", "finetune_steps", "loss", "extraction"]
VALIDATION_KEYS = ["provider", "max_abs_diff", "fidelity", "latency_ms_before", "latency_ms_after", "latency_runs",
                   "macs", "params", "checks", "fidelity_on"]


def test_json_keys_are_the_old_ones_plus_timings_data_resources_and_warnings(tmp_path):
    out = tmp_path / "p.onnx"
    result = CliRunner().invoke(app, ["prune", str(RESNET), "-o", str(out), "--method", "l1", "--steps", "2",
                                      "--finetune-steps", "1", "--batch-size", "8", "--channel-multiple", "1",
                                      "--json", "-q"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc)[: len(BEFORE_KEYS)] == BEFORE_KEYS
    assert list(doc)[len(BEFORE_KEYS):] == ["timings", "data", "resources", "warnings"]
    assert all(isinstance(w, str) for w in doc["warnings"])
    assert list(doc["validation"]) == VALIDATION_KEYS
    assert set(doc["validation"]["fidelity"]) == {"top1_agreement", "relative_error", "accuracy_before",
                                                  "accuracy_after", "worst_output", "worst_output_error",
                                                  "positives_output", "positives_kept", "least_varying_output",
                                                  "variation_kept", "top1_output", "decisions_output",
                                                  "decisions_kept", "decisions_class", "spread_output",
                                                  "spread_error", "sequences_output", "sequences_kept",
                                                  "sequences_read", "picture_output", "picture_psnr_db"}
    assert doc["extraction"] == {"ranking": "score", "channel_multiple": 1}
    assert set(doc["timings"]) <= set(STAGES) and {"load", "search", "validation", "write"} <= set(doc["timings"])
    assert doc["resources"]["peak_rss_mib"] > 0 and doc["data"]["samples"] > 0
