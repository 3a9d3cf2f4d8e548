#!/usr/bin/env bash
# GPU check: which providers onnxruntime really uses, the gpu-marked tests (skips count as failures),
# then prune + validate the sample ResNet on CUDA, a latency-aware prune timed on CUDA, and a short
# summary table.
#
#   scripts/gpu_check.sh                 # on a machine with a CUDA GPU
#   DEVICE=cpu scripts/gpu_check.sh      # dry run of the same flow on the CPU (no gpu tests)
#
# Env: PYTHON (default .venv/bin/python if present, else python3), OUT_DIR (default a temp folder),
# STEPS / FINETUNE_STEPS (default 30 / 10). Exit status: non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-30}
FINETUNE_STEPS=${FINETUNE_STEPS:-10}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT_DIR=${OUT_DIR:-$(mktemp -d -t darp-gpu-check.XXXXXX)}
mkdir -p "$OUT_DIR"
MODEL=sample_models/resnet.onnx
DATA=sample_models/data/digits_source.npz
PRUNED="$OUT_DIR/resnet.pruned.onnx"

darp() { "$PYTHON" -c 'import sys; from darp_onnx.cli.app import main; sys.argv[0] = "darp-onnx"; main()' "$@"; }
step() { printf '\n== %s\n' "$*" >&2; }

step "environment"
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L >&2 || true; else echo "nvidia-smi: not found" >&2; fi
# A session on the requested device: the providers it really uses, not the ones onnxruntime lists.
"$PYTHON" - "$MODEL" "$DEVICE" <<'EOF'
import sys

import onnxruntime as ort
import torch

from darp_onnx.errors import DarpError
from darp_onnx.runtime.session import make_session

model, device = sys.argv[1], sys.argv[2]
print(f"torch {torch.__version__}: cuda available {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""), file=sys.stderr)
print(f"onnxruntime {ort.__version__}: lists {ort.get_available_providers()}", file=sys.stderr)
try:
    session = make_session(model, device)
except DarpError as exc:
    sys.exit(f"error: {exc}")
print(f"onnxruntime session on {device}: really uses {session.get_providers()}", file=sys.stderr)
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("error: onnxruntime runs on CUDA but torch has no CUDA; install a CUDA build of torch")
EOF

if [[ "$DEVICE" == cuda ]]; then
    step "pytest -m gpu"
    DARP_REQUIRE_GPU=1 "$PYTHON" -m pytest -q -m gpu -rs -p no:cacheprovider
fi

step "prune $MODEL --device $DEVICE --steps $STEPS --finetune-steps $FINETUNE_STEPS"
darp prune "$MODEL" -o "$PRUNED" --force --device "$DEVICE" --steps "$STEPS" \
    --finetune-steps "$FINETUNE_STEPS" --json >"$OUT_DIR/prune.json"

step "validate $MODEL $PRUNED --device $DEVICE"
darp validate "$MODEL" "$PRUNED" --device "$DEVICE" --data "$DATA" --json >"$OUT_DIR/validate.json"

step "prune $MODEL --latency-aware --method l1 --device $DEVICE (layer timings on $DEVICE)"
darp prune "$MODEL" -o "$OUT_DIR/resnet.latency.onnx" --force --device "$DEVICE" --method l1 --latency-aware \
    --finetune-steps "$FINETUNE_STEPS" --json >"$OUT_DIR/prune_latency.json"

step "summary ($OUT_DIR)"
"$PYTHON" - "$OUT_DIR/prune.json" "$OUT_DIR/validate.json" "$DEVICE" "$OUT_DIR/prune_latency.json" <<'EOF'
import json
import sys

prune = json.load(open(sys.argv[1]))
check = json.load(open(sys.argv[2]))
device = sys.argv[3]
aware = json.load(open(sys.argv[4]))
pv, lat, fid = prune["validation"], check["latency_ms"], check["fidelity"]


def pct(value):
    return "n/a" if value is None else f"{value:.1%}"


rows = [
    ("torch device (prune)", prune["device"]),
    ("provider (prune validation)", pv["provider"]),
    ("provider (validate: original / pruned)", f"{check['provider']['original']} / {check['provider']['pruned']}"),
    ("max_abs_diff pruned vs masked proxy", f"{pv['max_abs_diff']:.3g}"),
    ("max_abs_diff pruned vs original", f"{check['max_abs_diff']:.3g}"),
    ("latency ms before -> after (median)",
     f"{lat['before']['median_ms']:.3f} -> {lat['after']['median_ms']:.3f} (x{lat['speedup']:.2f})"),
    ("MACs ratio", f"{check['macs']['ratio']:.3f} ({check['macs']['before']:,} -> {check['macs']['after']:,})"),
    ("params ratio", f"{check['params']['ratio']:.3f}"),
    ("latency-aware: multiple, choice", f"{aware['extraction']['channel_multiple']}, {aware['extraction']['ranking']}"),
    ("latency-aware: ms before -> after (provider)",
     f"{aware['validation']['latency_ms_before']:.3f} -> {aware['validation']['latency_ms_after']:.3f} "
     f"({aware['validation']['provider']}), MACs {aware['flops_after'] / aware['flops_before']:.3f}"),
    ("top-1 agreement / accuracy before -> after",
     f"{pct(fid['top1_agreement'])} / {pct(fid['accuracy_before'])} -> {pct(fid['accuracy_after'])}"),
]
width = max(len(k) for k, _ in rows)
for key, value in rows:
    print(f"{key:<{width}}  {value}")
if device == "cuda":
    used = {pv["provider"], check["provider"]["original"], check["provider"]["pruned"],
            aware["validation"]["provider"]}
    if used != {"CUDAExecutionProvider"} or prune["device"] != "cuda":
        sys.exit(f"error: asked for cuda but ran on {sorted(used)} (torch {prune['device']})")
EOF
