"""The plan keeps a safety margin of the time budget back (unplanned costs, a loaded machine)."""

from darp_onnx.workflows.plan import SAFETY_SHARE, usable_seconds


def test_usable_seconds_keeps_the_margin_back():
    assert usable_seconds(300.0) == 300.0 * (1.0 - SAFETY_SHARE)
    assert 0.0 < usable_seconds(300.0) < 300.0


def test_no_budget_has_no_usable_limit():
    assert usable_seconds(None) is None
