"""An input size missing: before asking for it, say whether the model has anything to prune at all."""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from darp_onnx.errors import BadInputError
from darp_onnx.groups import analyse
from darp_onnx.load.example_sizes import counting_sizes
from darp_onnx.load.ingest import ingest
from darp_onnx.search.budget import nothing_prunable


def refuse_if_nothing_prunable(model: onnx.ModelProto, given: Mapping[str, tuple[int, ...]], source: str,
                               seed: int = 0) -> None:
    """Raise BadInputError where the model has no prunable group at `inspect`'s example sizes. onnx-asr's
    Whisper front end (an STFT written as a convolution, a mel matrix product, over free waveform lengths) was
    asked for --input-shape, and once given one, found to have nothing to prune. Costs the ingestion and the
    channel analysis at those sizes, spent only where the run stops for a missing size anyway; where they
    fail, the missing size stays the error."""
    shapes, _ = counting_sizes(model, dict(given))
    try:
        analysis = analyse(ingest(model, shapes, seed=seed, source=source).model)
    except Exception:  # noqa: BLE001 - the missing size is the error to report
        return
    if not analysis.prunable():
        found = nothing_prunable(analysis, at=" (at example sizes for its free dims)").removeprefix("; ")
        raise BadInputError(f"{source}: {found}")
