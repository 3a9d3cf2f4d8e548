"""The plan keeps a safety margin of the time budget back (unplanned costs, a loaded machine)."""

from darp_onnx.workflows.plan import SAFETY_SHARE, usable_seconds


def test_usable_seconds_keeps_the_margin_back():
    assert usable_seconds(300.0) == 300.0 * (1.0 - SAFETY_SHARE)
    assert 0.0 < usable_seconds(300.0) < 300.0


def test_no_budget_has_no_usable_limit():
    assert usable_seconds(None) is None


def test_a_search_at_reduced_resolution_lowers_the_fewest_steps_cost():
    """deepbrain's 3-D U-Net with --search-resolution 0.5 was refused at the full resolution's minimum (10.2 min
    against 9.6 without it): the search's 20 fewest steps cost what its smaller samples cost."""
    import pytest

    from darp_onnx.errors import OptionError
    from darp_onnx.workflows.plan import refuse_before_timing_steps

    with pytest.raises(OptionError, match="far too short"):
        refuse_before_timing_steps(60.0, 0.0, 2.0, 1, 1, resizable=True)
    refuse_before_timing_steps(60.0, 0.0, 2.0, 1, 1, resizable=True, search_share=0.25)
