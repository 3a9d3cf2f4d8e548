"""The proxy against the ONNX project's backend node test suite (`load_model_tests(kind="node")`).

Every case runs twice: inputs fed at run time, and inputs after the first stored as initializers (as
exporters store weights). A claimed case (the registry converts each of its nodes) must compute the
expected outputs, or be refused with our own error for a reason listed in `refusals.py`; an unclaimed
case must be refused with our own error. Run alone with `pytest -m conformance`.
"""

from __future__ import annotations

import pytest

from tests.conformance.harness import MODES, PASS, REFUSED, is_claimed, node_cases, run_case
from tests.conformance.refusals import expected_refusal

pytestmark = pytest.mark.conformance

CASES = node_cases()


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
    assert outcome.status == PASS, f"{outcome.status}: {outcome.detail}"
