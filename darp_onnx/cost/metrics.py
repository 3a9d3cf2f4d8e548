"""Budget metrics, registered by name: what a budget limits, exactly (`cost`) and in expectation
over keep probabilities (`expected`, what the search penalises).

A metric is a class bound to one model's cost model (and latency model, where it needs one). A new
metric is one class and `register_metric(MyMetric)`; budgets, the search, the extractions and
`PruneConfig(budget=BudgetConfig("my_metric", 0.5))` pick it up from the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from darp_onnx.errors import OptionError

if TYPE_CHECKING:
    from darp_onnx.cost.model import CostModel


class Metric:
    """One budget metric over a model. Subclasses set the class attributes and the three methods."""

    name: ClassVar[str]  # the registry key, shown in results ("macs")
    option: ClassVar[str]  # the prune() parameter that asks for a budget of it ("target_flops")
    unit: ClassVar[str] = ""  # for messages ("MACs")
    needs_latency: ClassVar[bool] = False  # bound with a cost.latency.LatencyModel (layers timed first)
    fraction_only: ClassVar[bool] = False  # targets are fractions in (0, 1], never absolute amounts
    whole_counts: ClassVar[bool] = True  # absolute amounts are counts (MACs, parameters): whole numbers

    def __init__(self, cost_model: CostModel, latency_model: Any = None) -> None:
        if self.needs_latency and latency_model is None:
            raise ValueError(f"a {self.name} budget needs a LatencyModel")
        self.cost_model, self.latency_model = cost_model, latency_model

    @property
    def full(self) -> float:
        """The cost of the whole model."""
        raise NotImplementedError

    def cost(self, masks: Mapping[int, np.ndarray]) -> float:
        raise NotImplementedError

    def expected(self, probs: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """The cost in expectation over independent keep probabilities (differentiable)."""
        raise NotImplementedError

    def terms(self) -> list | None:
        """Monomials (`cost.expr`) that sum to the cost, for incremental pricing (latency-aware
        extraction); None where the metric has no such form."""
        return None

    def describe(self, value: float) -> str:
        return f"{value:,.0f} {self.unit or self.name}"

    @classmethod
    def check_target(cls, value: float) -> None:
        """A target is a fraction in (0, 1] or (unless `fraction_only`) an absolute amount > 1, whole for counts."""
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise OptionError(cls.option, f"{{option}} {value}: give a finite number, a fraction in (0, 1] such as 0.5"
                                          + ("" if cls.fraction_only else " or an absolute amount"))
        if cls.fraction_only and not 0 < value <= 1:
            raise OptionError(cls.option, f"{{option}} {value}: give a fraction of the model's {cls.unit or cls.name} "
                                          "in (0, 1], e.g. 0.5")
        if not value > 0:
            raise OptionError(cls.option, f"{{option}} must be positive (got {value}; a fraction like 0.5 or an "
                                          "absolute count)")
        if value > 1 and cls.whole_counts and not float(value).is_integer():
            raise OptionError(cls.option, f"{{option}} {value}: above 1 a budget is a count; give a whole number or "
                                          "a fraction in (0, 1]")


class Macs(Metric):
    name, option, unit = "macs", "target_flops", "macs"

    @property
    def full(self) -> float:
        return self.cost_model.full_macs

    def cost(self, masks):
        return self.cost_model.macs(masks)

    def expected(self, probs):
        return self.cost_model.expected_macs(probs)

    def terms(self):
        return [t.macs for t in self.cost_model.node_terms]


class Params(Metric):
    name, option, unit = "params", "target_params", "params"

    @property
    def full(self) -> float:
        return self.cost_model.full_params

    def cost(self, masks):
        return self.cost_model.params(masks)

    def expected(self, probs):
        return self.cost_model.expected_params(probs)

    def terms(self):
        return list(self.cost_model.param_terms.values())


class Latency(Metric):
    """Milliseconds the layer timings (`cost.latency.LatencyModel`) estimate."""

    name, option, unit = "latency", "target_latency", "latency"
    needs_latency, fraction_only = True, True

    @property
    def full(self) -> float:
        return self.latency_model.full_ms

    def cost(self, masks):
        return self.latency_model.estimate(masks)

    def expected(self, probs):
        return self.latency_model.expected(probs)

    def describe(self, value: float) -> str:
        return f"{value:.4g} ms (estimated)"


METRICS: dict[str, type[Metric]] = {}


def register_metric(metric: type[Metric]) -> type[Metric]:
    """Add a metric to the registry (usable as a class decorator); a name or option used twice is an error."""
    if metric.name in METRICS:
        raise ValueError(f"metric '{metric.name}' is already registered")
    if any(m.option == metric.option for m in METRICS.values()):
        raise ValueError(f"option '{metric.option}' already belongs to another metric")
    METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    METRICS.pop(name, None)


def get_metric(name: str) -> type[Metric]:
    if name not in METRICS:
        raise OptionError("metric", f"{{option}} {name}: unknown budget metric; choose one of {', '.join(METRICS)}")
    return METRICS[name]


for _metric in (Macs, Params, Latency):
    register_metric(_metric)


def budget_target(**targets: float | None) -> tuple[str, float] | None:
    """(metric name, value) from keyword targets named by the metrics' options (`target_flops=0.5`);
    None when none is given; OptionError for several, an unknown option or a bad value."""
    given = [(option, value) for option, value in targets.items() if value is not None]
    if not given:
        return None
    if len(given) > 1:
        names = [f"{{option:{m.option}}}" for m in METRICS.values()]
        raise OptionError(given[1][0], f"give exactly one budget: {', '.join(names[:-1])} or {names[-1]}")
    option, value = given[0]
    by_option = {m.option: m for m in METRICS.values()}
    if option not in by_option:
        raise OptionError(option, f"{{option}}: no budget metric takes it; known: {', '.join(by_option)}")
    by_option[option].check_target(value)
    return by_option[option].name, float(value)
