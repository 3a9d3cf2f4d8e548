"""Values exporters compute from constants at run time, folded at ingestion so the analysis can read them:
torch's TorchScript exporter's `F.pad` pads (torchcrepe) and, without constant folding, an LSTM's weights
sliced by Constant nodes (a Khmer CRNN exported with `do_constant_folding=False`)."""

from __future__ import annotations

import numpy as np
import onnx

from darp_onnx.groups import analyse
from darp_onnx.load.constant_islands import fold_constant_islands
from darp_onnx.load.ingest import ingest
from darp_onnx.load.stored_weights import fold_stored_weights
from tests.groups.builder import GraphBuilder
from tests.onnx_case import run_ort


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def _computed_pads(b: GraphBuilder) -> str:
    """TorchScript's F.pad(x, (0, 0, 1, 1)): [0, 0, 1, 1] as pairs, reversed and transposed at run time, cast."""
    zeros = b.op("ConstantOfShape", b.const(_i64(4)), value=onnx.numpy_helper.from_array(_i64(0)))
    pairs = b.op("Reshape", b.op("Concat", b.const(_i64(0, 0, 1, 1)), zeros, axis=0), b.const(_i64(-1, 2)))
    flipped = b.op("Slice", pairs, b.const(_i64(-1)), b.const(_i64(-(2 ** 62))), b.const(_i64(0)), b.const(_i64(-1)))
    return b.op("Cast", b.op("Reshape", b.op("Transpose", flipped, perm=[1, 0]), b.const(_i64(-1))), to=7)


def crepe_like() -> onnx.ModelProto:
    """Two convolutions over frames [N, 1, 16, 1], each behind a Pad of computed pads; the second's output
    flattened into a classifier ([-1, 8 * 16]), which needs the padded height as a number."""
    b = GraphBuilder(41)
    x = b.input("x", ["N", 1, 16, 1])
    h = b.op("Relu", b.op("Conv", x, b.weight(8, 1, 3, 1), b.weight(8), pads=[1, 0, 1, 0]))
    h = b.op("Relu", b.op("Conv", b.op("Pad", h, _computed_pads(b)), b.weight(8, 8, 3, 1), b.weight(8)))
    flat = b.op("Reshape", h, b.const(_i64(-1, 8 * 16)))
    return onnx.shape_inference.infer_shapes(b.build(b.op("MatMul", flat, b.weight(8 * 16, 5))), data_prop=True)


def test_computed_pads_are_folded_and_compute_the_same():
    model = crepe_like()
    folded, count = fold_constant_islands(model)
    assert count == 1 and not [n for n in folded.graph.node if n.op_type in ("Slice", "Transpose", "Concat")]
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 1, 16, 1)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(folded, feeds)[0], run_ort(model, feeds)[0], rtol=1e-6)


def test_shapes_are_inferred_again_after_folding_so_the_flattened_conv_prunes():
    """torchcrepe's conv6 stayed frozen ('symbolic dims after the channel axis at Reshape') while the same
    file folded by onnxruntime had it prunable: the shapes came from before the pads were folded."""
    model = crepe_like()
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert pad.output[0] not in {v.name for v in model.graph.value_info if v.type.tensor_type.shape.dim
                                 and all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim[1:])}
    groups = analyse(ingest(model).model).groups
    assert sorted(g.size for g in groups if not g.frozen) == [8, 8]


def lstm_sliced_by_constant_nodes() -> onnx.ModelProto:
    """torch's exporter with `do_constant_folding=False`: each gate block of W is a Slice whose starts and ends
    are Constant nodes, the blocks concatenated and unsqueezed into the LSTM."""
    b = GraphBuilder(42)
    h = b.cbr(b.input("x", ["N", 1, 2, 6]), 1, 4)
    seq = b.op("Transpose", b.op("Reshape", h, b.const(_i64(0, 8, -1))), perm=[2, 0, 1])
    hidden = 5

    def constant(*values: int) -> str:
        return b.op("Constant", value=onnx.numpy_helper.from_array(_i64(*values)))

    def reordered(stored: str) -> str:
        parts = [b.op("Slice", stored, constant(s), constant(s + hidden), constant(0))
                 for s in (0, 2 * hidden, 3 * hidden, hidden)]
        return b.op("Unsqueeze", b.op("Concat", *parts, axis=0), constant(0))

    y = b.op("LSTM", seq, reordered(b.weight(4 * hidden, 8)), reordered(b.weight(4 * hidden, hidden)),
             hidden_size=hidden, outputs=1)
    return b.build(b.op("MatMul", b.op("Squeeze", y, constant(1)), b.weight(hidden, 3)))


def test_lstm_weights_sliced_by_constant_nodes_are_folded_and_their_input_conv_prunes():
    model = lstm_sliced_by_constant_nodes()
    folded, count, _ = fold_stored_weights(model)
    assert count == 2 * (4 + 2)
    left = {n.op_type for n in folded.graph.node}
    assert not left & {"Slice", "Concat", "Unsqueeze"} and sum(n.op_type == "Constant" for n in folded.graph.node) == 1
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 1, 2, 6)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(folded, feeds)[0], run_ort(model, feeds)[0], rtol=1e-6)
    assert 4 in {g.size for g in analyse(ingest(model).model).groups if not g.frozen}
