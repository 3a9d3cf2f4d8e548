"""The proxy against the ONNX project's backend node test suite (`load_model_tests(kind="node")`).

Every case runs twice: inputs fed at run time, and inputs after the first stored as initializers (as
exporters store weights). A claimed case (the registry converts each of its nodes) must compute the
expected outputs (onnxruntime's where it differs from the reference: `RUNTIME_DIFFERENCES`), or be
refused with our own error for a reason listed in `refusals.py`; an unclaimed case must be refused with
our own error. Run alone with `pytest -m conformance`.
"""

from __future__ import annotations

import pytest
import torch

from tests.conformance.harness import (
    MODES,
    PASS,
    PASS_ORT,
    REFUSED,
    RUNTIME_DIFFERENCES,
    is_claimed,
    node_cases,
    run_case,
)
from tests.conformance.refusals import expected_refusal

pytestmark = pytest.mark.conformance

CASES = node_cases()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The cases are tiny: torch's thread pool costs more than it saves (4x the wall time on a busy
    machine), so the module runs on one thread and restores the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_node_case(name, mode):
    case = CASES[name]
    outcome = run_case(case, mode)
    if not is_claimed(case.model):
        assert outcome.status == REFUSED, f"unclaimed case not refused: {outcome.status}: {outcome.detail}"
        return
    if outcome.status == REFUSED:
        assert expected_refusal(outcome.detail), f"refused for an unlisted reason: {outcome.detail}"
        return
    wanted = PASS_ORT if name in RUNTIME_DIFFERENCES else PASS
    assert outcome.status == wanted, f"{outcome.status}: {outcome.detail}"
