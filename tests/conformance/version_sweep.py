"""Node cases re-run at older schema versions of their op, so every version a converter claims is checked.

The node suite builds most cases at the newest opset, which leaves older schema versions (opset 7-17
models are the common ones) unexercised. A single-node case restamped to an older opset is still a
valid test of that version when onnx's checker and strict shape inference accept it there: the node's
inputs and attributes exist in that version, and the reference outputs hold because the schema's
semantics for them did not change (a semantic change shows up as a mismatch to look at).
"""

from __future__ import annotations

import functools
from collections import defaultdict

import onnx
from onnx.backend.test.case.test_case import TestCase

from darp_onnx.load.io import default_opset
from darp_onnx.proxy.registry import OperatorKey, registered_keys, resolve_since_version
from tests.conformance.harness import is_claimed, node_cases

CASES_PER_VERSION = 2
# Versions whose semantics differ for the same node (the reference outputs do not hold there): Softmax
# and LogSoftmax before 13 flatten the input into 2-D at `axis`. tests/ops checks them against onnxruntime.
CHANGED_SEMANTICS = {("Softmax", 1), ("Softmax", 11), ("LogSoftmax", 1), ("LogSoftmax", 11)}


def restamped(case: TestCase, opset: int) -> TestCase | None:
    """The case's model at another default-domain opset, or None when it is not valid there."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return None
    return TestCase(name=f"{case.name}@opset{opset}", model_name=case.model_name, url=None, model_dir=None,
                    model=model, data_sets=case.data_sets, kind="node", rtol=case.rtol, atol=case.atol)


def native_keys() -> set[OperatorKey]:
    """The converter keys the node cases exercise at their own opsets."""
    keys = set()
    for case in node_cases().values():
        if is_claimed(case.model):
            opset = default_opset(case.model)
            keys |= {OperatorKey("", n.op_type, resolve_since_version(n.op_type, opset))
                     for n in case.model.graph.node if n.op_type != "Constant"}
    return keys


@functools.cache
def swept_cases() -> dict[OperatorKey, list[TestCase]]:
    """Up to CASES_PER_VERSION restamped single-node cases per claimed key the node suite leaves out."""
    by_op: dict[str, list[TestCase]] = defaultdict(list)
    for name, case in sorted(node_cases().items()):
        nodes = [n for n in case.model.graph.node if n.op_type != "Constant"]
        if len(nodes) == 1 and not name.endswith("_expanded") and is_claimed(case.model):
            by_op[nodes[0].op_type].append(case)
    covered = native_keys()
    swept: dict[OperatorKey, list[TestCase]] = {}
    for key in registered_keys():
        if key.domain or key in covered or (key.op_type, key.since_version) in CHANGED_SEMANTICS:
            continue
        found = []
        for case in by_op.get(key.op_type, []):
            older = restamped(case, key.since_version)
            if older is not None:
                found.append(older)
            if len(found) == CASES_PER_VERSION:
                break
        swept[key] = found
    return swept
