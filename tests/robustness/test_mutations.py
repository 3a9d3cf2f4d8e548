"""Random protobuf edits of a small model (hypothesis): `check` and `inspect` either succeed or fail
cleanly (documented code, one line, no traceback, no internal error), and never touch their input."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.robustness.harness import invoke, snapshot
from tests.robustness.models import SAMPLE, tiny

NAMES = ["x", "c1", "r1", "c2", "conv1.w", "conv2.b", "fc.w", "ghost", ""]
OPS = ["Relu", "Conv", "Add", "MatMul", "Concat", "Softmax", "Reshape", "NoSuchOp", ""]


def _edit(model: onnx.ModelProto, kind: str, a: int, b: int) -> None:
    graph = model.graph
    node = graph.node[a % len(graph.node)]
    if kind == "op_type":
        node.op_type = OPS[b % len(OPS)]
    elif kind == "input" and node.input:
        node.input[b % len(node.input)] = NAMES[a % len(NAMES)]
    elif kind == "output":
        node.output[0] = NAMES[b % len(NAMES)]
    elif kind == "attribute_int" and node.attribute:
        attr = node.attribute[b % len(node.attribute)]
        if attr.ints:
            attr.ints[0] = b - 3
        else:
            attr.i = b - 3
    elif kind == "drop_attribute" and node.attribute:
        del node.attribute[b % len(node.attribute)]
    elif kind == "drop_node":
        graph.node.remove(node)
    elif kind == "initializer_dims":
        init = graph.initializer[a % len(graph.initializer)]
        init.dims[b % len(init.dims)] = b % 20
    elif kind == "initializer_bytes":
        init = graph.initializer[a % len(graph.initializer)]
        init.raw_data = init.raw_data[: b * 4]
    elif kind == "input_type":
        graph.input[0].type.tensor_type.elem_type = b % 17
    elif kind == "input_dim":
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[b % len(dims)].dim_value = a % 40
    elif kind == "opset":
        model.opset_import[0].version = b % 30
    elif kind == "ir_version":
        model.ir_version = b % 14
    elif kind == "output_name":
        graph.output[0].name = NAMES[b % len(NAMES)]


KINDS = ["op_type", "input", "output", "attribute_int", "drop_attribute", "drop_node", "initializer_dims",
         "initializer_bytes", "input_type", "input_dim", "opset", "ir_version", "output_name"]
EDITS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=3)
BYTES = st.one_of(st.none(), st.tuples(st.sampled_from(["flip", "cut"]), st.integers(0, 10**6), st.integers(1, 255)))


def _mutated(edits, byte_edit) -> bytes:
    model = tiny(symbolic_size=False)
    for kind, a, b in edits:
        _edit(model, kind, a, b)
    data = bytearray(model.SerializeToString())
    if byte_edit is not None:
        how, where, value = byte_edit
        where %= len(data)
        if how == "flip":
            data[where] ^= value
        else:
            data = data[:where]
    return bytes(data)


def _assert_clean(outcome, before, after) -> None:
    assert outcome.exception is None, f"exception escaped: {outcome.exception!r}"
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert outcome.code in (0, 1, 2), outcome.code
    if outcome.code:
        lines = outcome.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
        assert "internal error" not in lines[0], lines[0]
    assert after == before


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(edits=EDITS, byte_edit=BYTES)
def test_random_edits_fail_cleanly_or_pass(edits, byte_edit):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.onnx"
        path.write_bytes(_mutated(edits, byte_edit))
        before = snapshot(Path(folder))
        for command in (["inspect", str(path), "--json", "-q"], ["check", str(path), "-q"]):
            _assert_clean(invoke(command), before, snapshot(Path(folder)))


SAMPLE_KINDS = ["op_type", "input", "attribute_int", "drop_attribute", "drop_node", "initializer_dims",
                "initializer_bytes", "input_dim", "opset"]


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.sampled_from(SAMPLE_KINDS), st.integers(0, 500), st.integers(0, 50)),
                      min_size=1, max_size=2))
def test_random_edits_of_a_real_sample_model(edits):
    """The same on the bundled ResNet (a real export: fused patterns, shape sub-graphs, residual adds)."""
    model = onnx.load(str(SAMPLE))
    for kind, a, b in edits:
        _edit(model, kind, a, b)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.onnx"
        path.write_bytes(model.SerializeToString())
        before = snapshot(Path(folder))
        _assert_clean(invoke(["inspect", str(path), "--json", "-q"]), before, snapshot(Path(folder)))
