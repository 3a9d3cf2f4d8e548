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
