"""The DARP gate search, its relaxation and schedules, budgets and the baseline scorers."""

from darp_onnx.search.baselines import BASELINES
from darp_onnx.search.budget import Budget, extract_masks, make_budget
from darp_onnx.search.darp import DarpConfig, SearchResult, darp_search

METHODS = ("darp", *BASELINES)

__all__ = ["BASELINES", "METHODS", "Budget", "DarpConfig", "SearchResult", "darp_search", "extract_masks",
           "make_budget"]
