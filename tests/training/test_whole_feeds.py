"""A model without a batch axis ([frames, bins], as madmom's spectrogram models) takes --data as whole feeds
stacked along a first axis; before, no array shape was accepted ("the model expects rank 2")."""

from __future__ import annotations

import numpy as np
import pytest

import darp_onnx
from darp_onnx.errors import BadInputError
from darp_onnx.load.io import load_model
from darp_onnx.training.data_shapes import shapes_from_data
from darp_onnx.training.dataset import load_dataset
from tests.groups.builder import GraphBuilder


def frames_model():
    """[T, 8] -> MatMul 8x16 -> Relu -> MatMul 16x4: no batch axis, T symbolic."""
    b = GraphBuilder(7)
    x = b.input("x", ["frames", 8])
    h = b.op("Relu", b.op("MatMul", x, b.weight(8, 16)))
    return b.build(b.op("MatMul", h, b.weight(16, 4)))


def _npz(tmp_path, shape, name="x"):
    path = tmp_path / "feeds.npz"
    np.savez(path, **{name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
    return path


def test_stacked_feeds_give_the_feed_shape_and_micro_batches(tmp_path):
    model = frames_model()
    path = _npz(tmp_path, (48, 20, 8))
    assert shapes_from_data(str(path), model, {}) == {"x": (20, 8)}
    data = load_dataset(path, model)
    assert data.micro_batches and len(data) == 48 and data.first_feed()["x"].shape == (20, 8)


def test_a_feed_of_the_wrong_width_is_named(tmp_path):
    with pytest.raises(BadInputError, match="axis 2 must be 8"):
        load_dataset(_npz(tmp_path, (48, 20, 6)), frames_model())


def test_prune_with_stacked_feeds(tmp_path):
    path = _npz(tmp_path, (48, 20, 8))
    model_path = tmp_path / "frames.onnx"
    import onnx

    onnx.save_model(frames_model(), str(model_path))
    result = darp_onnx.prune(str(model_path), data=str(path), output=tmp_path / "p.onnx", target_flops=0.6,
                             search_steps=4, finetune_steps=2, batch_size=4, latency_runs=2, channel_multiple=1,
                             max_drift="off")
    assert result.flops_after < result.flops_before
    assert result.validation.fidelity_on == "10 held-out samples" and result.data["samples"] == 38
    written = load_model(tmp_path / "p.onnx")
    assert [d.dim_param for d in written.graph.input[0].type.tensor_type.shape.dim][:1] == ["frames"]


def styled_model():
    """picture [1, 3, 6, 6] scaled per channel by weights [3] (no batch axis; a conditional style) -> Conv."""
    b = GraphBuilder(8)
    x = b.input("picture", [1, 3, 6, 6])
    w = b.op("Reshape", b.input("weights", [3]), b.const(np.array([1, 3, 1, 1], np.int64)))
    h = b.op("Relu", b.conv(b.op("Mul", x, w), 3, 8))
    return b.build(b.conv(h, 8, 3))


def test_samples_of_a_batch_of_one_beside_whole_feeds_are_fed_together(tmp_path):
    """multistyle26: pictures (48, 3, 256, 256) for [1, 3, h, w] and style weights (48, 26) for [26] were
    refused ('expects rank 1 (samples first), or rank 2 for every input')."""
    path = tmp_path / "feeds.npz"
    rng = np.random.default_rng(1)
    np.savez(path, picture=rng.normal(size=(20, 3, 6, 6)).astype(np.float32),
             weights=rng.random((20, 3)).astype(np.float32))
    data = load_dataset(path, styled_model())
    assert data.micro_batches and len(data) == 20
    assert {k: v.shape for k, v in data.first_feed().items()} == {"picture": (1, 3, 6, 6), "weights": (3,)}
    assert any("is fed with the same row of 'weights'" in note for note in data.notes)
