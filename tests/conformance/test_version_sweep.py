"""Every schema version a converter claims is exercised: by a node case at its own opset, by a node case
restamped to that version (version_sweep.py), or by the one-node tests in tests/ops listed below."""

from __future__ import annotations

import pytest
import torch

from darp_onnx.proxy.registry import OperatorKey
from tests.conformance.harness import MODES, PASS, REFUSED, run_case
from tests.conformance.refusals import expected_refusal
from tests.conformance.version_sweep import CHANGED_SEMANTICS, swept_cases

pytestmark = pytest.mark.conformance

# Claimed versions no valid node case reaches (their node cases use a later input/attribute form);
# tests/ops compares each with onnxruntime (GlobalLpPool-22, which onnxruntime lacks, with numpy).
COVERED_BY_OPS_TESTS = {
    ("Clip", 6): "test_activations", ("DepthToSpace", 1): "test_shape_ops depthtospace-op9",
    ("GlobalLpPool", 2): "test_pooling global", ("GlobalLpPool", 22): "test_pooling test_global_lp_pool_opset22",
    ("GroupNormalization", 18): "test_normalization", ("Pad", 2): "test_pad",
    ("Resize", 10): "test_resize opset10", ("Resize", 11): "test_resize opset11", ("Slice", 1): "test_concat_split",
    ("Squeeze", 1): "test_shape_ops op10", ("Squeeze", 11): "test_shape_ops op11",
    ("Unsqueeze", 1): "test_shape_ops op10", ("Unsqueeze", 11): "test_shape_ops op11",
    ("TopK", 1): "test_gather", ("Upsample", 7): "test_resize upsample opset7",
    **{key: "test_activations softmax (semantics changed at 13)" for key in CHANGED_SEMANTICS},
    **{(op, v): "test_reduce" for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean",
                                         "ReduceSum", "ReduceSumSquare") for v in (1, 11, 13)},
}

SWEPT = [(key, case) for key, cases in swept_cases().items() for case in cases]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_claimed_version_has_a_case_or_an_ops_test():
    uncovered = {(k.op_type, k.since_version) for k, cases in swept_cases().items() if not cases}
    assert uncovered <= set(COVERED_BY_OPS_TESTS), f"no test for: {sorted(uncovered - set(COVERED_BY_OPS_TESTS))}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key,case", SWEPT, ids=[case.name for _, case in SWEPT])
def test_node_case_at_an_older_version(key: OperatorKey, case, mode):
    outcome = run_case(case, mode)
    if outcome.status == REFUSED:
        assert expected_refusal(outcome.detail), f"refused for an unlisted reason: {outcome.detail}"
        return
    assert outcome.status == PASS, f"{key.op_type}-{key.since_version}: {outcome.status}: {outcome.detail}"
