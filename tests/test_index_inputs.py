"""Synthetic token ids cover the embedding table they index; lengths are full; other integers stay 0/1."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from darp_onnx.load.index_inputs import index_bounds
from darp_onnx.load.inputs import synthetic_inputs
from tests.groups.builder import GraphBuilder


def _encoder():
    """input_ids -> Cast -> Gather(table of 50 rows); attention_mask -> Cast -> Mul (a mask, not ids)."""
    b = GraphBuilder(43)
    b.inputs.append(helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", 6]))
    b.inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", 6]))
    ids = b.op("Cast", "input_ids", to=TensorProto.INT32)
    embedded = b.op("Gather", b.weight(50, 4), ids, axis=0)
    mask = b.op("Unsqueeze", b.op("Cast", "attention_mask", to=TensorProto.FLOAT), b.const(np.array([2])))
    return b.build(b.op("Mul", embedded, mask))


def test_ids_are_drawn_from_every_row_of_their_table():
    model = _encoder()
    assert index_bounds(model) == {"input_ids": 50}
    feeds = synthetic_inputs(model, batch=64, seed=0)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.min() >= 0 and ids.max() < 50 and len(np.unique(ids)) > 40  # before: 0 and 1 only
    assert set(np.unique(mask)) <= {0, 1}


def test_one_integer_per_sample_is_a_length_and_gets_the_full_one():
    """trueocr's recogniser takes `widths` [N] beside its picture [N, 1, 96, W]: with 0 or 1 it read nothing
    and every output was constant; the full width makes every sample whole."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 40])
    widths = helper.make_tensor_value_info("widths", TensorProto.INT64, ["N"])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 40])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Cast", ["widths"], ["w"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Sum", ["x", "w", "m"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, widths, mask], [y]))
    feeds = synthetic_inputs(model, batch=3, seed=0)
    assert feeds["widths"].tolist() == [40, 40, 40]
    assert set(np.unique(feeds["mask"])) <= {0, 1}  # a mask per position stays 0 or 1


def test_ids_in_a_float_input_are_whole_rows_of_their_table():
    """tf2onnx's Keras Embedding: a float input cast to an index. It got standard normal values (rows -2..2
    after the cast), and a note said so, though the table was known."""
    from darp_onnx.training.dataset import synthetic_dataset
    from darp_onnx.training.synthetic_check import unpictured_floats

    b = GraphBuilder(44)
    b.inputs.append(helper.make_tensor_value_info("chars", TensorProto.FLOAT, ["N", 21]))
    model = b.build(b.op("Gather", b.weight(178, 4), b.op("Cast", "chars", to=TensorProto.INT64), axis=0))
    assert index_bounds(model) == {"chars": 178}
    drawn = (synthetic_inputs(model, batch=64, seed=0)["chars"], synthetic_dataset(model, samples=64).inputs["chars"])
    for ids in drawn:
        assert ids.dtype == np.float32 and ids.min() >= 0 and ids.max() < 178
        assert np.array_equal(ids, np.round(ids)) and len(np.unique(ids)) > 100
    assert unpictured_floats(model, []) == []


def test_ids_selected_from_an_input_before_the_lookup_keep_their_table():
    """attacut's [1, 2, seq] input: Gather(input, 0, axis=1) and Gather(input, 1, axis=1) pick the character
    and syllable ids, each indexing its own table; the input got one 0/1 draw for every sample."""
    b = GraphBuilder(45)
    b.inputs.append(helper.make_tensor_value_info("input", TensorProto.INT64, [1, 2, "seq"]))
    chars = b.op("Gather", "input", b.const(np.array(0, np.int64)), axis=1)
    sylls = b.op("Gather", "input", b.const(np.array(1, np.int64)), axis=1)
    model = b.build(b.op("Add", b.op("Gather", b.weight(180, 4), chars, axis=0),
                         b.op("Gather", b.weight(40, 4), sylls, axis=0)))
    assert index_bounds(model) == {"input": 40}
