"""The input sizes a model was pruned at travel with it (metadata), so `validate` and `inspect` need no
--input-shape again; `inspect` of a model with free sizes counts it at example sizes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import darp_onnx
from darp_onnx.load.input_shapes import record_input_shapes, recorded_input_shapes
from tests.groups.builder import GraphBuilder


def free_height_model() -> onnx.ModelProto:
    """A recogniser-like CNN whose height and width are free (PP-OCR exports: 'DynamicDimension.1')."""
    b = GraphBuilder(46)
    h = b.cbr(b.cbr(b.input("x", ["n", 3, "height", "width"]), 3, 8), 8, 8)
    return b.build(b.op("GlobalAveragePool", b.conv(h, 8, 4)))


def _quick_prune(original, output, shape: tuple[int, ...]) -> None:
    """A few steps of prune at `shape` for input 'x' (what is recorded is tested, not the fit)."""
    darp_onnx.prune(original, output=output, target_flops=0.7, input_shapes={"x": shape}, search_steps=2,
                    finetune_steps=1, batch_size=4, synthetic_samples=8, latency_runs=2, channel_multiple=1,
                    max_drift="off")


def test_recorded_sizes_round_trip_and_ignore_what_does_not_fit():
    model = free_height_model()
    assert recorded_input_shapes(model) == {}
    record_input_shapes(model, {"x": (1, 3, 48, 96), "gone": (1, 2)})
    assert recorded_input_shapes(model) == {"x": (1, 3, 48, 96)}  # an input the model lacks is dropped
    record_input_shapes(model, {"x": (1, 3, 48)})  # replaced, and of the wrong rank: not used
    assert recorded_input_shapes(model) == {} and len(model.metadata_props) == 1
    model.metadata_props[0].value = "{not json"
    assert recorded_input_shapes(model) == {}


def test_validate_runs_a_pruned_model_at_the_sizes_it_was_pruned_at(tmp_path):
    original = tmp_path / "rec.onnx"
    onnx.save(free_height_model(), original)
    with pytest.raises(darp_onnx.BadInputError, match="--input-shape"):
        darp_onnx.validate(original, original, latency_runs=0, samples=2)
    _quick_prune(original, tmp_path / "p.onnx", (1, 3, 12, 20))
    result = darp_onnx.validate(original, tmp_path / "p.onnx", latency_runs=0, samples=4)
    assert result["input_shapes"] == {"x": [1, 3, 12, 20]} and result["macs"]["after"] < result["macs"]["before"]
    report = darp_onnx.inspect(tmp_path / "p.onnx")
    assert report["input_shapes"] == {"x": [1, 3, 12, 20]}
    assert report["input_shapes_from"] == "the sizes the model was pruned at"


def test_inspect_counts_a_model_with_free_sizes_at_example_sizes(tmp_path):
    path = tmp_path / "rec.onnx"
    onnx.save(free_height_model(), path)
    report = darp_onnx.inspect(path)
    assert report["input_shapes"] == {"x": [1, 3, 224, 224]} and report["macs"] > 0
    assert report["input_shapes_from"].startswith("example sizes")
    given = darp_onnx.inspect(path, input_shapes={"x": (1, 3, 48, 96)})
    assert given["input_shapes_from"] == "--input-shape" and given["macs"] < report["macs"]


def test_diff_counts_both_models_at_the_sizes_the_pruned_one_was_pruned_at(tmp_path):
    original = tmp_path / "rec.onnx"
    onnx.save(free_height_model(), original)
    _quick_prune(original, tmp_path / "p.onnx", (1, 3, 12, 20))
    diff = darp_onnx.diff(original, tmp_path / "p.onnx")
    assert diff.macs.before == darp_onnx.inspect(original, input_shapes={"x": (1, 3, 12, 20)})["macs"]
    assert 0 < diff.macs.after < diff.macs.before
    assert diff.input_shapes_from == "the sizes the model was pruned at"


def test_diff_counts_models_with_free_sizes_at_inspects_example_sizes(tmp_path):
    """waifu2x CUNet (free height and width) against its copy: `diff` warned "MACs not counted" for both where
    `inspect` counted them at example sizes."""
    path = tmp_path / "rec.onnx"
    onnx.save(free_height_model(), path)
    diff = darp_onnx.diff(path, path)
    assert diff.macs.before == diff.macs.after == darp_onnx.inspect(path)["macs"] and not diff.warnings
    assert diff.input_shapes == {"x": (1, 3, 224, 224)} and diff.input_shapes_from.startswith("example sizes")
    given = darp_onnx.diff(path, path, input_shapes={"x": (1, 3, 48, 96)})
    assert given.input_shapes_from == "--input-shape" and given.macs.before < diff.macs.before


def test_validate_runs_a_model_that_takes_samples_in_groups(tmp_path):
    """ICLabel (4 views a sample, Reshape to [4, -1]) pruned at batch 4: validate ended in 'internal error'
    when it timed one row; without the sizes it now says what to give."""
    from tests.test_ingest import samples_in_groups_of_four

    original = tmp_path / "iclabel.onnx"
    onnx.save(samples_in_groups_of_four(), original)
    with pytest.raises(darp_onnx.BadInputError, match="one sample .*--input-shape"):
        darp_onnx.validate(original, original, samples=8, latency_runs=2)
    _quick_prune(original, tmp_path / "p.onnx", (4, 2, 3, 3))
    result = darp_onnx.validate(original, tmp_path / "p.onnx", samples=8, latency_runs=2)
    assert result["input_shapes"] == {"x": [4, 2, 3, 3]} and result["latency_ms"]["after"]["median_ms"] > 0



def test_validate_runs_a_time_major_output_one_sample_at_a_time(tmp_path):
    """chineseocr_lite's CRNN outputs [steps, N, classes]: validate concatenated its batches along the steps
    (144 samples: 'internal error', the batches' second axes 64 and 16; 128: samples and steps mixed). Its
    outputs are not indexed by sample, so each sample runs alone, as prune runs them."""
    b = GraphBuilder(47)
    steps = b.op("Transpose", b.conv(b.input("x", ["n", 3, 1, 12]), 3, 5), perm=[3, 0, 1, 2])  # [12, n, 5, 1]
    path = tmp_path / "time_major.onnx"
    onnx.save(b.build(steps), path)
    result = darp_onnx.validate(path, path, samples=10, latency_runs=0, input_shapes={"x": (1, 3, 1, 12)})
    assert result["passed"] and result["outputs"][0]["shape"] == [10, 12, 1, 5, 1]  # one [12, 1, 5, 1] a sample


def test_inspect_gives_dims_named_alike_one_example_size(tmp_path):
    """hama's decoder step: [batch, src_len, 192] beside a float [batch, src_len] (a 'waveform' of 16000 by its
    own rank) and [2, batch, 96]; each input's own example sizes disagreed and onnxruntime refused the model."""
    b = GraphBuilder(49)
    keys = b.input("keys", ["batch", "src_len", 4])
    attn = b.input("prev_attn", ["batch", "src_len"])
    hidden = b.input("hidden", [2, "batch", 4])
    scores = b.op("Add", b.op("ReduceSum", keys, b.const(np.array([2], np.int64)), keepdims=0), attn)
    mixed = b.op("MatMul", b.op("Unsqueeze", scores, b.const(np.array([1], np.int64))), keys)  # [batch, 1, 4]
    model = b.build(b.op("Add", b.op("Transpose", mixed, perm=[1, 0, 2]), hidden))
    path = tmp_path / "step.onnx"
    onnx.save(model, path)
    report = darp_onnx.inspect(path)
    assert report["input_shapes"] == {"keys": [1, 64, 4], "prev_attn": [1, 64], "hidden": [2, 1, 4]}


def test_inspect_tries_other_picture_sides_where_224_does_not_run(tmp_path):
    """A MobileViT exported at 256x256 keeps its patch counts as constants: at the example 224x224 its Reshape
    failed and inspect asked for --input-shape; the next sides are tried in turn."""
    b = GraphBuilder(50)
    patches = b.op("Reshape", b.input("x", ["n", 3, "height", "width"]), b.const(np.array([-1, 3, 65536], np.int64)))
    model = b.build(b.op("ReduceMean", patches, axes=[2], keepdims=0))
    path = tmp_path / "fixed_patches.onnx"
    onnx.save(model, path)
    report = darp_onnx.inspect(path)
    assert report["input_shapes"] == {"x": [1, 3, 256, 256]} and "example sizes" in report["input_shapes_from"]
