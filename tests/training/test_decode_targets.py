"""A graph that decodes in itself (ArgMax) is distilled on the scores it decodes; it keeps its own outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

import darp_onnx
from darp_onnx.proxy import build_proxy
from darp_onnx.training.decode_targets import MAX_TARGET_BYTES, decoded_scores
from tests.groups.builder import GraphBuilder


def _segmenter():
    """Conv layers, then a per-pixel ArgMax over 5 classes: the only output is int64 labels."""
    b = GraphBuilder(7, opset=17)
    h = b.op("Relu", b.conv(b.input("x", ["N", 3, 16, 16]), 3, 16))
    scores = b.conv(b.op("Relu", b.conv(h, 16, 16)), 16, 5)
    return b.build(b.op("ArgMax", scores, axis=1, keepdims=0)), scores


def test_the_decoded_scores_are_found_and_capped_by_size():
    model, scores = _segmenter()
    assert decoded_scores(model, {scores: (1, 5, 16, 16)}, samples=8) == ([scores], 8)
    per_sample = MAX_TARGET_BYTES // 4 + 1
    assert decoded_scores(model, {scores: (1, per_sample)}, samples=1) == ([], 1)  # too big to hold
    tenth = MAX_TARGET_BYTES // 4 // 10  # ten samples' scores fit: the run uses ten of 400
    assert decoded_scores(model, {scores: (1, tenth)}, samples=400) == ([scores], 10)
    assert decoded_scores(model, {scores: (1, tenth * 2)}, samples=400) == ([], 400)  # five: too few


def test_the_proxy_returns_the_scores_after_the_graph_outputs():
    model, scores = _segmenter()
    proxy = build_proxy(model)
    assert proxy.add_outputs([scores, "no such tensor"]) == [scores]
    labels, logits = proxy(x=np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))
    assert logits.shape == (2, 5, 16, 16) and labels.dtype.is_floating_point is False


def test_a_data_free_prune_of_an_argmax_graph_learns_from_the_scores(tmp_path):
    model, _ = _segmenter()
    path = tmp_path / "seg.onnx"
    onnx.save(model, path)
    notes = []
    result = darp_onnx.prune(path, output=tmp_path / "out.onnx", target_flops=0.5, search_steps=12,
                             finetune_steps=4, batch_size=8, synthetic_samples=16, latency_runs=1,
                             input_shapes={"x": (1, 3, 16, 16)},
                             progress=lambda kind, info: notes.append(info.get("message", "")))
    assert any("ArgMax" in n for n in notes)
    written = onnx.load(tmp_path / "out.onnx")
    assert [o.name for o in written.graph.output] == [o.name for o in model.graph.output]
    session = ort.InferenceSession(written.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((1, 3, 16, 16), np.float32)})[0].dtype == np.int64
    assert result.validation.fidelity.relative_error < 1.0


def test_integer_outputs_with_no_scores_to_hold_are_refused_before_the_search(tmp_path, monkeypatch):
    """sudachi's tagger with 400 samples: its decoded scores did not fit, and the search's first backward
    pass failed inside autograd ("element 0 of tensors does not require grad")."""
    import pytest

    from darp_onnx.errors import BadInputError
    from darp_onnx.training import decode_targets

    monkeypatch.setattr(decode_targets, "MAX_TARGET_BYTES", 1)
    model, _ = _segmenter()
    with pytest.raises(BadInputError, match="holds integers .* nothing to fit"):
        darp_onnx.prune(model, output=tmp_path / "out.onnx", target_flops=0.5, search_steps=2, finetune_steps=1,
                        batch_size=8, synthetic_samples=16, latency_runs=1, input_shapes={"x": (1, 3, 16, 16)})
    assert not (tmp_path / "out.onnx").exists()
