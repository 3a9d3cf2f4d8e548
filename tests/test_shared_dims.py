"""A free dim named alike in several inputs is given once: input_ids=1x64 sizes attention_mask and
token_type_ids too (a BERT user was asked for the three one by one)."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from darp_onnx.errors import BadInputError
from darp_onnx.load.input_shapes import resolve_input_shapes


def _model(*inputs):
    values = [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name, dims in inputs]
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name, _ in inputs]
    outputs = [helper.make_tensor_value_info(f"{name}_out", TensorProto.INT64, dims) for name, dims in inputs]
    return helper.make_model(helper.make_graph(nodes, "g", values, outputs))


def test_the_inputs_sharing_named_dims_follow_the_one_given():
    model = _model(("input_ids", ["batch", "seq"]), ("attention_mask", ["batch", "seq"]),
                   ("token_type_ids", ["batch", "seq"]))
    shapes = resolve_input_shapes(model, {"input_ids": (2, 48)}, check_fixed=True)
    assert shapes == {"input_ids": (2, 48), "attention_mask": (2, 48), "token_type_ids": (2, 48)}


def test_a_given_shape_wins_and_other_names_are_not_guessed():
    model = _model(("ids", ["batch", "seq"]), ("mask", ["batch", "seq"]), ("other", ["batch", "len"]),
                   ("fixed", ["batch", 4]))
    shapes = resolve_input_shapes(model, {"ids": (1, 32), "mask": (1, 16)}, check_fixed=True)
    assert shapes == {"ids": (1, 32), "mask": (1, 16), "fixed": (1, 4)}  # 'len' is nobody's


def test_a_named_first_axis_is_shared_too():
    """A graph network's inputs share 'num_atoms' on their first axis, which is not a batch."""
    model = _model(("element", ["num_atoms"]), ("pos", ["num_atoms", 3]), ("edges", [2, "num_edges"]),
                   ("dist", ["num_edges"]))
    shapes = resolve_input_shapes(model, {"element": (32,), "edges": (2, 64)}, check_fixed=True)
    assert shapes == {"element": (32,), "edges": (2, 64), "pos": (32, 3), "dist": (64,)}


def test_a_wrong_rank_is_still_refused():
    model = _model(("ids", ["batch", "seq"]), ("mask", ["batch", "seq"]))
    with pytest.raises(BadInputError, match="has 2 dims, not 3"):
        resolve_input_shapes(model, {"ids": (1, 2, 3)})


def test_written_outputs_keep_the_names_of_their_free_dims():
    from darp_onnx.load.input_shapes import name_output_dims

    given = _model(("ids", ["batch_size", "sequence_length"]))
    written = _model(("ids", ["unk__56", None]))
    written.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 0
    name_output_dims(written, {o.name: o for o in given.graph.output})
    assert [d.dim_param for d in written.graph.output[0].type.tensor_type.shape.dim] == ["batch_size",
                                                                                        "sequence_length"]
