"""Converters claim only the ONNX schema versions the tests cover (up to MAX_TESTED_OPSET)."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy, registered_keys
from darp_onnx.proxy.registry import (
    MAX_TESTED_OPSET,
    add_converter,
    all_schema_versions,
    get_converter,
    supported_ops,
)

CLAIMED = sorted({key.op_type for key in registered_keys() if not key.domain})


def test_no_converter_claims_a_version_newer_than_the_tested_opset():
    assert all(key.since_version <= MAX_TESTED_OPSET for key in registered_keys())


@pytest.mark.parametrize("op_type", CLAIMED)
def test_installed_onnx_has_no_untested_version_of_a_claimed_op(op_type):
    """Fails when the installed onnx adds a schema version for an op we convert: check the converter
    against the new version (and tests/conformance), then raise MAX_TESTED_OPSET."""
    newer = [v for v in all_schema_versions(op_type) if v > MAX_TESTED_OPSET]
    assert not newer, f"{op_type}: schema versions {newer} are newer than MAX_TESTED_OPSET={MAX_TESTED_OPSET}"


def test_registering_an_untested_version_is_an_error():
    with pytest.raises(ValueError, match="MAX_TESTED_OPSET"):
        add_converter("Relu", versions=[MAX_TESTED_OPSET + 1])(lambda node, ctx: None)


def test_a_model_past_the_tested_version_is_refused_with_the_versions_we_convert(monkeypatch):
    """A schema version newer than the cap has no converter, and the error says which versions do."""
    monkeypatch.setattr("darp_onnx.proxy.model.get_converter", lambda *args: None)
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match=r"converts Relu schema versions \[.*14\]"):
        build_proxy(model)


def test_supported_ops_lists_claimed_ops():
    assert "Relu" in supported_ops() and get_converter("Relu", MAX_TESTED_OPSET) is not None
