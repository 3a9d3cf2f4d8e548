"""A budget metric defined and registered here only (nothing else in the package changes) prunes end to end:
the DARP search penalises its expectation and the extraction meets it exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from darp_onnx.cost.metrics import Metric, register_metric, unregister_metric
from darp_onnx.errors import OptionError
from darp_onnx.workflows.config import BudgetConfig, prune_config
from darp_onnx.workflows.prune import prune

RESNET = Path(__file__).resolve().parents[2] / "sample_models" / "resnet.onnx"


class WeightedOps(Metric):
    """A toy 'operations' count: two per MAC plus one per parameter."""

    name, option, unit = "toy_ops", "target_toy_ops", "ops"

    @property
    def full(self) -> float:
        return 2 * self.cost_model.full_macs + self.cost_model.full_params

    def cost(self, masks):
        return 2 * self.cost_model.macs(masks) + self.cost_model.params(masks)

    def expected(self, probs):
        return 2 * self.cost_model.expected_macs(probs) + self.cost_model.expected_params(probs)


@pytest.fixture()
def toy_metric():
    register_metric(WeightedOps)
    yield WeightedOps
    unregister_metric(WeightedOps.name)


def test_a_metric_registered_in_a_test_prunes_end_to_end(toy_metric):
    config = prune_config(write=False, search_steps=6, finetune_steps=2, batch_size=8, synthetic_samples=16,
                          latency_runs=2, channel_multiple=1)
    result = prune(RESNET, replace(config, budget=BudgetConfig("toy_ops", 0.6)))
    full = 2 * result.flops_before + result.params_before
    assert result.metric == "toy_ops" and result.budget == pytest.approx(0.6 * full)
    assert 2 * result.flops_after + result.params_after <= 0.6 * full
    assert result.search_steps == 6 and result.validation.max_abs_diff < 1e-3


def test_an_unknown_metric_is_named():
    with pytest.raises(OptionError, match="metric toy_ops: unknown budget metric"):
        BudgetConfig("toy_ops", 0.5)


def test_a_metric_name_is_registered_once(toy_metric):
    with pytest.raises(ValueError, match="already registered"):
        register_metric(toy_metric)
