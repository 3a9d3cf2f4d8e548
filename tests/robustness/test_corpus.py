"""The corpus of bad and careless invocations (issue 13): each ends with its documented exit code, one
line on stderr naming what to fix, no traceback, every input byte-identical and no file left behind.
Path and number mistakes must be reported within PREFLIGHT_SECONDS (before any proxy is built)."""

from __future__ import annotations

import json

import pytest

from tests.robustness.harness import PREFLIGHT_SECONDS, assert_failed_cleanly, invoke, snapshot
from tests.robustness.models import build_workspace

FAST = ["--steps", "2", "--finetune-steps", "0", "-q"]

# (id, arguments with {w} for the workspace folder, exit code, text the error line must hold)
PATHS = [
    ("missing-model", ["prune", "{w}/nothere.onnx"], 1, "no such file"),
    ("model-is-folder", ["prune", "{w}/sub"], 1, "is a folder"),
    ("output-is-input", ["prune", "{w}/model.onnx", "-o", "{w}/model.onnx", "--force"], 1, "is the input model"),
    ("output-is-input-symlink", ["prune", "{w}/model.onnx", "-o", "{w}/link.onnx", "--force"], 1,
     "is the input model"),
    ("output-is-input-dotdot", ["prune", "{w}/model.onnx", "-o", "{w}/sub/../model.onnx", "--force"], 1,
     "is the input model"),
    ("output-is-input-hardlink", ["prune", "{w}/model.onnx", "-o", "{w}/hard.onnx", "--force"], 1,
     "is the input model"),
    ("input-is-symlink-output-is-target", ["prune", "{w}/link.onnx", "-o", "{w}/model.onnx", "--force"], 1,
     "is the input model"),
    ("output-folder-missing", ["prune", "{w}/model.onnx", "-o", "{w}/nowhere/out.onnx"], 1, "does not exist"),
    ("output-parent-is-file", ["prune", "{w}/model.onnx", "-o", "{w}/afile/out.onnx"], 1, "does not exist"),
    ("output-is-folder", ["prune", "{w}/model.onnx", "-o", "{w}/afolder.onnx", "--force"], 1, "is a folder"),
    ("output-exists", ["prune", "{w}/model.onnx", "-o", "{w}/existing.onnx"], 1, "pass --force"),
    ("output-is-data", ["prune", "{w}/model.onnx", "-o", "{w}/data.npz", "--data", "{w}/data.npz", "--force"], 1,
     "is the data"),
    ("report-is-file", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--report", "{w}/afile"], 1, "is a file"),
    ("report-parent-missing", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--report", "{w}/no/where"], 1,
     "does not exist"),
    ("report-is-output", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--report", "{w}/out.onnx"], 1,
     "given both as"),
    ("data-missing", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--data", "{w}/nodata.npz"], 1,
     "no such data"),
    ("config-missing", ["prune", "{w}/model.onnx", "--config", "{w}/nothere.toml"], 1, "no such config file"),
    ("config-is-folder", ["prune", "{w}/model.onnx", "--config", "{w}/sub"], 1, "is a folder"),
    ("config-broken", ["prune", "{w}/model.onnx", "--config", "{w}/broken.toml"], 1, "not valid TOML"),
    ("config-unknown-key", ["prune", "{w}/model.onnx", "--config", "{w}/unknown.toml"], 1, "unknown key"),
    ("config-bad-value", ["prune", "{w}/model.onnx", "--config", "{w}/badvalue.toml"], 1, "target-flops"),
    ("config-nan", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--config", "{w}/nan.toml"], 1,
     "--target-flops nan"),
    ("config-negative-steps", ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--config", "{w}/steps.toml"], 1,
     "--steps -5"),
    ("finetune-output-is-input", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "-o", "{w}/link.onnx",
                                  "--force"], 1, "is the input model"),
    ("finetune-output-folder-missing", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "-o",
                                        "{w}/nowhere/x.onnx"], 1, "does not exist"),
    ("finetune-data-missing", ["finetune", "{w}/model.onnx", "--data", "{w}/nothere.npz"], 1, "no such data"),
    ("validate-missing-original", ["validate", "{w}/nothere.onnx", "{w}/model.onnx"], 1, "no such file"),
    ("validate-missing-pruned", ["validate", "{w}/model.onnx", "{w}/nothere.onnx"], 1, "no such file"),
    ("diff-report-is-input", ["diff", "{w}/model.onnx", "{w}/fixed.onnx", "--html", "{w}/model.onnx"], 1,
     "is one of the input models"),
    ("diff-html-folder-missing", ["diff", "{w}/model.onnx", "{w}/fixed.onnx", "--html", "{w}/nowhere/d.html",
                                  "--markdown", "{w}/d.md"], 1, "does not exist"),
    ("diff-html-is-markdown", ["diff", "{w}/model.onnx", "{w}/fixed.onnx", "--html", "{w}/d.txt", "--markdown",
                               "{w}/d.txt"], 1, "given both as"),
    ("diff-html-is-folder", ["diff", "{w}/model.onnx", "{w}/fixed.onnx", "--html", "{w}/sub"], 1, "is a folder"),
    ("output-is-config", ["prune", "{w}/model.onnx", "--config", "{w}/steps.toml", "-o", "{w}/steps.toml",
                          "--force"], 1, "is the --config file"),
    ("inspect-missing", ["inspect", "{w}/nothere.onnx"], 1, "no such file"),
    ("check-folder", ["check", "{w}/sub"], 1, "is a folder"),
]

P = ["prune", "{w}/fixed.onnx", "-o", "{w}/out.onnx"]  # fixed 3x16x16 input, symbolic batch
S = ["prune", "{w}/model.onnx", "-o", "{w}/out.onnx"]  # symbolic height and width
NUMBERS = [
    ("flops-nan", [*P, "--target-flops", "nan"], 1, "--target-flops nan"),
    ("flops-inf", [*P, "--target-flops", "inf"], 1, "--target-flops inf"),
    ("flops-negative", [*P, "--target-flops", "-0.5"], 1, "--target-flops must be positive (got -0.5"),
    ("flops-zero", [*P, "--target-flops", "0"], 1, "--target-flops must be positive (got 0"),
    ("flops-text", [*P, "--target-flops", "abc"], 1, "--target-flops"),
    ("flops-fractional-count", [*P, "--target-flops", "2.5"], 1, "whole number"),
    ("flops-huge", ["prune", "{w}/fixed.onnx", "-o", "{w}/out.onnx", "--target-flops", "1e30"], 1,
     "more than the model's"),
    ("symbolic-dims-without-shape", S, 1, "give its shape with --input-shape"),
    ("params-nan", [*P, "--target-params", "nan"], 1, "--target-params nan"),
    ("latency-above-one", [*P, "--target-latency", "2"], 1, "--target-latency 2"),
    ("two-budgets", [*P, "--target-flops", "0.5", "--target-params", "0.5"], 1, "exactly one budget"),
    ("steps-negative", [*P, "--steps", "-5"], 1, "--steps -5"),
    ("steps-zero", [*P, "--steps", "0"], 1, "--steps 0"),
    ("steps-fraction", [*P, "--steps", "1.5"], 1, "--steps"),
    ("finetune-steps-negative", [*P, "--finetune-steps", "-1"], 1, "--finetune-steps -1"),
    ("batch-zero", [*P, "--batch-size", "0"], 1, "--batch-size 0"),
    ("batch-negative", [*P, "--batch-size", "-3"], 1, "--batch-size -3"),
    ("lr-nan", [*P, "--lr", "nan"], 1, "--lr nan"),
    ("lr-zero", [*P, "--lr", "0"], 1, "--lr 0"),
    ("lr-inf", [*P, "--lr", "inf"], 1, "--lr inf"),
    ("search-lr-negative", [*P, "--search-lr", "-1"], 1, "--search-lr -1"),
    ("latency-weight-nan", [*P, "--latency-weight", "nan"], 1, "--latency-weight nan"),
    ("seed-negative", [*P, "--seed", "-1"], 1, "--seed -1"),
    ("seed-huge", [*P, "--seed", str(2**40)], 1, "--seed"),
    ("tau-zero", [*P, "--tau-sample", "0:0.1"], 1, "--tau-sample"),
    ("tau-nan", [*P, "--tau-penalty", "nan:0.1"], 1, "--tau-penalty"),
    ("tau-text", [*P, "--tau-sample", "a:b"], 1, "--tau-sample"),
    ("schedule-unknown", [*P, "--schedule", "sometimes"], 1, "--schedule"),
    ("method-unknown", [*P, "--method", "magic"], 1, "--method magic"),
    ("channel-multiple-zero", [*P, "--channel-multiple", "0"], 1, "--channel-multiple 0"),
    ("channel-multiple-text", [*P, "--channel-multiple", "wide"], 1, "--channel-multiple wide"),
    ("quiet-and-verbose", [*P, "-q", "-v"], 1, "exclude each other"),
    ("unknown-option", [*P, "--target-flop", "0.5"], 1, "No such option"),
    ("shape-syntax", [*P, "--input-shape", "1x3xfoo"], 1, "--input-shape '1x3xfoo'"),
    ("shape-zero-dim", [*P, "--input-shape", "0x3x8x8"], 1, "at least 1"),
    ("shape-unknown-input", [*P, "--input-shape", "y=1x3x8x8"], 1, "has no input 'y'"),
    ("shape-wrong-rank", [*P, "--input-shape", "1x3x8"], 1, "has 4 dims, not 3"),
    ("shape-wrong-channels", ["prune", "{w}/fixed.onnx", "-o", "{w}/out.onnx", "--input-shape", "x=1x1x16x16"], 1,
     "axis 1 of input 'x' is fixed at 3"),
    ("shape-twice", [*P, "--input-shape", "x=1x3x8x8", "--input-shape", "x=1x3x9x9"], 1, "given twice"),
    ("shape-out-of-memory", [*S, "--input-shape", "1x3x8192x8192"], 1, "of memory"),
    ("batch-out-of-memory", [*S, "--input-shape", "1x3x64x64", "--batch-size", "100000000"], 1, "of memory"),
    ("finetune-lr-nan", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--lr", "nan"], 1, "--lr nan"),
    ("finetune-batch-zero", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--batch-size", "0"], 1,
     "--batch-size 0"),
    ("finetune-val-fraction", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--val-fraction", "1.5"],
     1, "--val-fraction 1.5"),
    ("finetune-val-fraction-nan", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--val-fraction",
                                   "nan"], 1, "--val-fraction nan"),
    ("finetune-new-head-one", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--new-head", "1"], 1,
     "--new-head 1"),
    ("finetune-seed-negative", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--seed", "-2"], 1,
     "--seed -2"),
    ("finetune-patience-zero", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--patience", "0"], 1,
     "--patience 0"),
    ("finetune-steps-and-epochs", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--steps", "3",
                                   "--epochs", "1"], 1, "not both"),
    ("finetune-init-unknown", ["finetune", "{w}/model.onnx", "--data", "{w}/data.npz", "--init", "random"], 1,
     "--init random"),
    ("validate-max-drift-nan", ["validate", "{w}/model.onnx", "{w}/model.onnx", "--max-drift", "nan"], 1,
     "--max-drift nan"),
    ("validate-atol-negative", ["validate", "{w}/model.onnx", "{w}/model.onnx", "--atol", "-1"], 1, "--atol -1"),
    ("validate-samples-zero", ["validate", "{w}/model.onnx", "{w}/model.onnx", "--samples", "0"], 1,
     "--samples 0"),
    ("validate-seed-negative", ["validate", "{w}/model.onnx", "{w}/model.onnx", "--seed", "-1"], 1, "--seed -1"),
    ("validate-shape-fixed", ["validate", "{w}/fixed.onnx", "{w}/fixed.onnx", "--input-shape", "1x3x32x32"], 1,
     "is fixed at 16"),
    ("check-batch-zero", ["check", "{w}/model.onnx", "--batch", "0"], 1, "--batch 0"),
    ("inspect-shape-syntax", ["inspect", "{w}/model.onnx", "--input-shape", "x=a"], 1, "--input-shape 'x=a'"),
    ("no-such-command", ["squash", "{w}/model.onnx"], 1, "No such command"),
]

MODELS = [
    ("nan-weight-check", ["check", "{w}/nan.onnx"], 1, "weight 'conv2.w' holds 1 NaN/Inf"),
    ("nan-weight-prune", ["prune", "{w}/nan.onnx", "-o", "{w}/out.onnx"], 1, "--allow-nonfinite"),
    ("inf-weight-finetune", ["finetune", "{w}/inf.onnx", "--data", "{w}/data.npz"], 1, "weight 'fc.b'"),
    ("nan-weight-validate-original", ["validate", "{w}/nan.onnx", "{w}/model.onnx"], 1, "weight 'conv2.w'"),
    ("nan-weight-validate-pruned", ["validate", "{w}/model.onnx", "{w}/nan.onnx"], 2, "weight 'conv2.w'"),
    ("custom-op-prune", ["prune", "{w}/custom.onnx", "-o", "{w}/out.onnx"], 1, "com.example::FancyAct"),
    ("custom-op-check", ["check", "{w}/custom.onnx"], 1, "com.example::FancyAct"),
    ("dangling-edge-prune", ["prune", "{w}/dangling.onnx", "-o", "{w}/out.onnx"], 1, "nobody_makes_this"),
    ("dangling-edge-check", ["check", "{w}/dangling.onnx"], 1, "nobody_makes_this"),
    ("unsupported-op-prune", ["prune", "{w}/unsupported.onnx", "-o", "{w}/out.onnx"], 1, "Hardmax"),
    ("future-opset", ["prune", "{w}/future.onnx", "-o", "{w}/out.onnx"], 1, "opset 999"),
    ("ancient-opset", ["check", "{w}/ancient.onnx"], 1, "opset 3"),
    ("no-inputs", ["inspect", "{w}/noinputs.onnx"], 1, "no inputs"),
    ("empty-file", ["prune", "{w}/empty.onnx", "-o", "{w}/out.onnx"], 1, "holds no ONNX graph"),
    ("truncated-file", ["check", "{w}/truncated.onnx"], 1, "{w}/truncated.onnx"),
    ("garbage-file", ["inspect", "{w}/garbage.onnx"], 1, "{w}/garbage.onnx"),
    ("text-file", ["prune", "{w}/text.onnx", "-o", "{w}/out.onnx"], 1, "{w}/text.onnx"),
    ("external-data-escape", ["check", "{w}/escape.onnx"], 1, "outside the model's folder"),
    ("external-data-missing", ["inspect", "{w}/external_missing.onnx"], 1, "is missing"),
    ("diff-garbage", ["diff", "{w}/model.onnx", "{w}/garbage.onnx"], 1, "{w}/garbage.onnx"),
    ("validate-garbage-pruned", ["validate", "{w}/model.onnx", "{w}/garbage.onnx"], 2, "{w}/garbage.onnx"),
]

D = [*P, *FAST, "--data"]
F = ["finetune", "{w}/model.onnx", "-o", "{w}/out.onnx", "--steps", "2", "--data"]
DATA = [
    ("data-strings", [*D, "{w}/strings.npz"], 1, "no strings or objects"),
    ("data-scalar", [*D, "{w}/scalar.npz"], 1, "is a scalar"),
    ("data-nan", [*D, "{w}/nandata.npz"], 1, "NaN or Inf"),
    ("data-beyond-float32", [*D, "{w}/toowide.npz"], 1, "beyond its range"),
    ("data-wrong-shape", [*D, "{w}/shape.npz"], 1, "axis 1 must be 3"),
    ("data-wrong-rank", [*D, "{w}/rank.npz"], 1, "rank 4"),
    ("data-empty", [*D, "{w}/empty.npz"], 1, "non-zero number of samples"),
    ("data-wrong-name", [*D, "{w}/wrongname.npz"], 1, "no array for model input 'x'"),
    ("data-pickled-npz", [*D, "{w}/pickled.npz"], 1, "{w}/pickled.npz"),
    ("data-pickled-npy", [*D, "{w}/pickled.npy"], 1, "{w}/pickled.npy"),
    ("data-not-npz", [*D, "{w}/notnpz.npz"], 1, "{w}/notnpz.npz"),
    ("data-empty-folder", [*D, "{w}/nodata"], 1, "holds no"),
    ("labels-fractional", [*D, "{w}/fraclabels.npz"], 1, "labels must be integers"),
    ("labels-strings", [*D, "{w}/strlabels.npz"], 1, "labels must be integers"),
    ("labels-too-few", [*D, "{w}/fewlabels.npz"], 1, "5 labels for 16 samples"),
    ("labels-negative", [*D, "{w}/negative.npz"], 1, "non-negative"),
    ("finetune-unlabelled-scalar", [*F, "{w}/unlabelled_scalar.npz"], 1, "is a scalar"),
    ("finetune-strings", [*F, "{w}/strings.npz"], 1, "no strings or objects"),
    ("finetune-label-out-of-range", [*F, "{w}/bigclass.npz"], 1, "out of range"),
    ("finetune-fractional-labels", [*F, "{w}/fraclabels.npz"], 1, "labels must be integers"),
    ("validate-data-strings", ["validate", "{w}/model.onnx", "{w}/model.onnx", "--data", "{w}/strings.npz"], 1,
     "no strings or objects"),
]

CORPUS = [("paths", *c) for c in PATHS] + [("numbers", *c) for c in NUMBERS] + [("models", *c) for c in MODELS] + [
    ("data", *c) for c in DATA]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("corpus") / "w")


def _fill(args: list[str], folder) -> list[str]:
    return [a.replace("{w}", str(folder)) for a in args]


@pytest.mark.parametrize(("category", "case", "args", "code", "message"), CORPUS, ids=[c[1] for c in CORPUS])
def test_bad_invocation_fails_cleanly(workspace, category, case, args, code, message):
    before = snapshot(workspace)
    outcome = invoke(_fill(args, workspace))
    assert_failed_cleanly(outcome, code=code, message=message.replace("{w}", str(workspace)), before=before,
                          after=snapshot(workspace))
    if category in ("paths", "numbers"):
        assert outcome.seconds < PREFLIGHT_SECONDS, f"{case}: reported after {outcome.seconds:.1f} s"


@pytest.mark.parametrize(("case", "args"), [(c[1], c[2]) for c in CORPUS[:8]], ids=[c[1] for c in CORPUS[:8]])
def test_json_errors_are_one_document_on_stdout(workspace, case, args):
    outcome = invoke([*_fill(args, workspace), "--json"])
    doc = json.loads(outcome.stdout)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "stage"}
    assert doc["error"]["code"] == outcome.code != 0
    assert doc["error"]["message"] in outcome.stderr.replace("\n", " ") or doc["error"]["message"][:40] in \
        " ".join(outcome.stderr.split())
