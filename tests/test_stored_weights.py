"""Weights stored as float16 or int8 and converted at run time: computed once, then pruned like any other."""

from __future__ import annotations

import numpy as np
import onnx

import darp_onnx
from darp_onnx.cost import count_graph
from darp_onnx.groups import analyse
from darp_onnx.load.ingest import ingest
from darp_onnx.load.stored_weights import fold_stored_weights
from tests.groups.builder import GraphBuilder
from tests.onnx_case import run_ort


def _stored_conv(b: GraphBuilder, x: str, cin: int, cout: int, how: str) -> str:
    rng = np.random.default_rng(cin * 100 + cout)
    w = rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32)
    if how == "float16":  # a half-precision export: Cast(to=float) of each weight
        weight = b.op("Cast", b.const(w.astype(np.float16), "w16"), to=onnx.TensorProto.FLOAT)
    elif how == "dequantize":  # weight-only uint8 as ONNX spells it (tf2onnx's TFLite models): DequantizeLinear
        scale = (np.abs(w).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
        q = np.clip(np.rint(w / scale.reshape(cout, 1, 1, 1)) + 128, 0, 255).astype(np.uint8)
        weight = b.op("DequantizeLinear", b.const(q, "w8"), b.const(scale, "scale"),
                      b.const(np.full(cout, 128, np.uint8), "zero"), axis=0)
    else:  # weight-only int8: Cast, then Mul by a per-channel scale
        scale = (np.abs(w).reshape(cout, -1).max(axis=1) / 127).astype(np.float32).reshape(cout, 1, 1, 1)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        weight = b.op("Mul", b.op("Cast", b.const(q, "w8"), to=onnx.TensorProto.FLOAT), b.const(scale, "scale"))
    return b.op("Relu", b.op("Conv", x, weight, b.const(np.zeros(cout, np.float32), "bias"), pads=[1] * 4))


def stored_model(how: str) -> onnx.ModelProto:
    b = GraphBuilder(21)
    h = _stored_conv(b, b.input("x", ["n", 3, 8, 8]), 3, 8, how)
    h = _stored_conv(b, h, 8, 8, how)
    return b.build(b.conv(h, 8, 4))


def test_folded_weights_compute_the_same_and_become_prunable():
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)}
    for how in ("float16", "int8"):
        model = stored_model(how)
        assert not [g for g in analyse(model).groups if not g.frozen]  # the weights are node outputs: nothing
        folded, count, stored = fold_stored_weights(model)
        assert count == (2 if how == "float16" else 4)
        assert len(stored) == (2 if how == "float16" else 0)  # int8 weights scaled: not restorable
        assert not [n for n in folded.graph.node if n.op_type in ("Cast", "Mul")]
        np.testing.assert_array_equal(run_ort(folded, feeds)[0], run_ort(model, feeds)[0])
        assert ingest(model, {"x": (1, 3, 8, 8)}).folded == count
        assert sorted(g.size for g in analyse(folded).groups if not g.frozen) == [8, 8]
        assert [n.op_type for n in model.graph.node].count("Cast") == 2  # the caller's model is not changed


def test_a_model_without_stored_weights_comes_back_as_it_is():
    b = GraphBuilder(22)
    model = b.build(b.conv(b.input("x", [1, 3, 8, 8]), 3, 4))
    same, count, stored = fold_stored_weights(model)
    assert same is model and count == 0 and stored == {}


def test_a_half_precision_model_prunes_and_equals_its_proxy(tmp_path):
    """The written float16 weights are the trained ones rounded: the proxy computes with the rounded values."""
    b = GraphBuilder(23)
    x = b.input("x", ["n", 3, 8, 8])
    rng = np.random.default_rng(1)
    w1 = b.const(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float16), "w16")
    h = b.op("Relu", b.op("Conv", b.op("Cast", x, to=onnx.TensorProto.FLOAT16), w1, pads=[1] * 4))
    w2 = b.const(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float16), "w16")
    out = b.op("Cast", b.op("Conv", h, w2, pads=[1] * 4), to=onnx.TensorProto.FLOAT)
    result = darp_onnx.prune(b.build(out), output=tmp_path / "p.onnx", target_flops=0.6,
                             input_shapes={"x": (1, 3, 8, 8)}, search_steps=4, finetune_steps=3, batch_size=4,
                             synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert result.flops_after < result.flops_before and result.finetune_steps == 3
    written = onnx.load(str(tmp_path / "p.onnx"))
    assert {t.data_type for t in written.graph.initializer if t.name.startswith("w16")} == {onnx.TensorProto.FLOAT16}
    assert not [w for w in result.warnings if "larger than the original" in w]


def test_prune_says_when_folded_weights_make_the_written_file_larger(tmp_path):
    result = darp_onnx.prune(stored_model("int8"), output=tmp_path / "p.onnx", target_flops=0.8,
                             input_shapes={"x": (1, 3, 8, 8)}, search_steps=2, finetune_steps=1, batch_size=4,
                             synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert any("larger than the original" in w and "int8" in w for w in result.warnings)
    # int8 weights are parameters too: 'params 52 -> 600' was reported (the int8 ones went uncounted)
    assert result.params_before == 8 * 3 * 9 + 8 * 8 * 9 + 4 * 8 * 9 + 8 + 8 + 4  # weights (scales folded in), biases
    assert result.params_after < result.params_before
    assert count_graph(stored_model("int8"), {"x": (1, 3, 8, 8)}).params == result.params_before  # validate, diff


def test_weights_stored_below_float32_are_rounded_to_what_will_be_written():
    import torch

    from darp_onnx.proxy import build_proxy

    b = GraphBuilder(24)
    x = b.input("x", [1, 3, 4, 4])
    w16 = b.const(np.ones((2, 3, 1, 1), np.float16), "w16")
    w32 = b.const(np.ones((2, 2, 1, 1), np.float32), "w32")
    h = b.op("Conv", b.op("Cast", x, to=onnx.TensorProto.FLOAT16), w16)
    proxy = build_proxy(b.build(b.op("Conv", b.op("Cast", h, to=onnx.TensorProto.FLOAT), w32)))
    half, full = proxy.tensor(w16), proxy.tensor(w32)  # parameters: read through .detach()
    with torch.no_grad():
        half.fill_(1.0001)  # between two float16 values (1 and 1.000977)
        full.fill_(1.0001)
    proxy.round_to_stored()
    assert float(half.detach().flatten()[0]) == 1.0 and half.dtype == torch.float32
    assert float(full.detach().flatten()[0]) == np.float32(1.0001)


def test_an_initializer_declared_as_an_input_is_not_folded():
    """IR 3 lists initializers as graph inputs, which a caller may feed: folding one would make it required."""
    model = stored_model("float16")
    w16 = next(t for t in model.graph.initializer if t.name.startswith("w16"))
    model.graph.input.append(onnx.helper.make_tensor_value_info(w16.name, onnx.TensorProto.FLOAT16, list(w16.dims)))
    folded, count, _ = fold_stored_weights(model)
    assert count == 1 and w16.name in {t.name for t in folded.graph.initializer}


def test_float16_weights_behind_a_cast_are_written_as_float16_again(tmp_path):
    """The MobileNetV4 (float16 weights behind Cast) was written with float32 weights: a larger file."""
    model = stored_model("float16")
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.6, input_shapes={"x": (1, 3, 8, 8)},
                             search_steps=4, finetune_steps=3, batch_size=4, synthetic_samples=8, latency_runs=2,
                             channel_multiple=1, max_drift="off")
    written = onnx.load(str(tmp_path / "p.onnx"))
    convs = [n for n in written.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in written.graph.node for o in n.output}
    inits = {t.name: t for t in written.graph.initializer}
    casts = [producers[c.input[1]] for c in convs[:2]]
    assert [c.op_type for c in casts] == ["Cast", "Cast"]
    assert {inits[c.input[0]].data_type for c in casts} == {onnx.TensorProto.FLOAT16}
    assert result.flops_after < result.flops_before and not [w for w in result.warnings if "larger" in w]


def test_folding_leaves_initializers_it_did_not_read_alone():
    model = stored_model("float16")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(3, np.float32), "unread"))
    folded, _, _ = fold_stored_weights(model)
    assert "unread" in {t.name for t in folded.graph.initializer}


def test_dequantized_constant_weights_are_folded_and_pruned(tmp_path):
    """facex's TFLite model through tf2onnx: 49 DequantizeLinear of uint8 initializers, refused as a quantized
    graph; the weights are constants, and a float model computes the same."""
    model = stored_model("dequantize")
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)}
    folded, count, _ = fold_stored_weights(model)
    assert count == 2 and not [n for n in folded.graph.node if n.op_type == "DequantizeLinear"]
    np.testing.assert_allclose(run_ort(folded, feeds)[0], run_ort(model, feeds)[0], rtol=1e-5, atol=1e-5)
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.6, input_shapes={"x": (1, 3, 8, 8)},
                             search_steps=2, finetune_steps=1, batch_size=4, synthetic_samples=8, latency_runs=2,
                             channel_multiple=1, max_drift="off")
    assert result.flops_after < result.flops_before


def test_a_dequantized_activation_is_still_a_quantized_graph():
    import pytest

    from darp_onnx.errors import UnsupportedOpError

    b = GraphBuilder(25)
    q = b.op("QuantizeLinear", b.input("x", [1, 3, 8, 8]), b.const(np.array(0.1, np.float32), "s"))
    model = b.build(b.conv(b.op("DequantizeLinear", q, b.const(np.array(0.1, np.float32), "s2")), 3, 4))
    with pytest.raises(UnsupportedOpError, match="quantized graph"):
        ingest(model, {"x": (1, 3, 8, 8)})


def test_a_transposed_shared_weight_is_folded_and_its_readers_prune_alike():
    """ALBERT through dynamo stores its one layer's weights once as [out, in] and transposes each at run time
    for the four uses: every projection was a MatMul of two activations, nothing but branches prunable."""
    b = GraphBuilder(26)
    rng = np.random.default_rng(2)
    up = b.op("Transpose", b.const(rng.normal(0, 0.3, (32, 16)).astype(np.float32), "up"), perm=[1, 0])
    down = b.op("Transpose", b.const(rng.normal(0, 0.3, (16, 32)).astype(np.float32), "down"), perm=[1, 0])
    h = b.input("x", ["n", 16])
    for _ in range(2):  # one shared FFN run twice
        h = b.op("Add", h, b.op("MatMul", b.op("Relu", b.op("MatMul", h, up)), down))
    model = b.build(h)
    folded, count, _ = fold_stored_weights(model)
    assert count == 2 and "Transpose" not in {n.op_type for n in folded.graph.node}
    feeds = {"x": rng.normal(size=(3, 16)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(folded, feeds)[0], run_ort(model, feeds)[0], rtol=1e-5, atol=1e-5)
    assert [g.size for g in analyse(folded).prunable() if g.kind == "channel"] == [32]  # one group, both uses


def test_lstm_weights_torch_1x_slices_and_concatenates_are_folded(tmp_path):
    """torch 1.3 writes an LSTM's W, R and B as Unsqueeze(Concat(Slice(stored), ...)) (the gates reordered):
    chineseocr_lite's CRNN froze its 288 LSTM input channels as 'op not understood'. Opset 9: Slice and
    Unsqueeze take attributes."""
    b = GraphBuilder(29, opset=9)
    h = b.cbr(b.input("x", ["N", 1, 2, 6]), 1, 4)
    seq = b.op("Transpose", b.op("Reshape", h, b.const(np.array([0, 8, -1], np.int64))), perm=[2, 0, 1])
    hidden = 5

    def reordered(stored: str, rows: int) -> str:  # [i, o, f, c] -> [i, f, c, o] rows, as torch 1.x wrote it
        parts = [b.op("Slice", stored, starts=[s], ends=[s + rows], axes=[0]) for s in (0, 2 * rows, 3 * rows, rows)]
        return b.op("Unsqueeze", b.op("Concat", *parts, axis=0), axes=[0])

    w = reordered(b.weight(4 * hidden, 8), hidden)
    r = reordered(b.weight(4 * hidden, hidden), hidden)
    y = b.op("LSTM", seq, w, r, hidden_size=hidden, outputs=1)
    model = b.build(b.op("MatMul", b.op("Squeeze", y, axes=[1]), b.weight(hidden, 3)))
    folded, count, _ = fold_stored_weights(model)
    assert count == 2 * (4 + 2) and not [n for n in folded.graph.node if n.op_type in ("Slice", "Concat")]
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 1, 2, 6)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(folded, feeds)[0], run_ort(model, feeds)[0], rtol=1e-6)
    widths = {g.size for g in analyse(folded).groups if not g.frozen}
    assert 4 in widths and 4 not in {g.size for g in analyse(model).groups if not g.frozen}  # the conv feeding W
