"""Heads found where the graph never writes num_heads: transformers' `view(*shape, -1, head_dim)` exported by
TorchScript names the heads dim afresh at every Reshape ('unk__3'); the analysis learns it from the -1
computed against the channel count, and prunes whole heads."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from darp_onnx import prune
from darp_onnx.groups import analyse
from darp_onnx.load.ingest import ingest
from tests.groups.models_attention import DIM, EXPORTERS, FFN, HEADS, LAYERS, SEQ, export, loaded


@EXPORTERS
def test_every_layer_has_a_head_group(dynamo):
    analysis = analyse(ingest(loaded("view", dynamo)).model)
    prunable = [(g.kind, g.size) for g in analysis.prunable()]
    assert prunable.count(("head", HEADS)) == LAYERS
    assert prunable.count(("channel", FFN)) == LAYERS


def test_pruned_heads_keep_any_batch_and_sequence(tmp_path):
    model = export("view", dynamo=False)
    out = tmp_path / "p.onnx"
    result = prune(model, output=out, target_flops=0.75, search_steps=4, finetune_steps=2, batch_size=4,
                   synthetic_samples=8, latency_runs=2, max_drift="off", keep_kinds=("channel", "branch"),
                   input_shapes={"x": (1, SEQ, DIM), "mask": (1, SEQ)})
    assert any(row["kind"] == "head" and row["kept"] < row["size"] for row in result.groups)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, seq in ((1, SEQ), (3, 5)):
        feeds = {"x": rng.standard_normal((batch, seq, DIM)).astype(np.float32),
                 "mask": np.ones((batch, seq), np.float32)}
        assert session.run(None, feeds)[0].shape == (batch, 3)
