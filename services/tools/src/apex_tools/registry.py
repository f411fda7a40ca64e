"""Every tool the service can run: its typed input, implementation, timeout and family."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apex_contracts.envelope import Model
from apex_contracts.tools import TOOL_SPECS, ToolResult
from apex_tools.catalog.batch import batch_opportunity
from apex_tools.catalog.caching import caching_opportunity
from apex_tools.catalog.costs import cost_breakdown
from apex_tools.catalog.coverage import usage_coverage
from apex_tools.catalog.errors import error_waste
from apex_tools.catalog.growth import growth_projection
from apex_tools.catalog.latency import latency_profile
from apex_tools.catalog.outliers import prompt_outliers
from apex_tools.catalog.substitution import model_substitution
from apex_tools.ports import UsageQueries

ToolFn = Callable[[UsageQueries, str, Any], Awaitable[ToolResult]]

# Tools that run several dependent queries get more time than one-query tools.
_SLOW = {"caching_opportunity": 2.0, "prompt_outliers": 2.0, "model_substitution": 1.5}


@dataclass(frozen=True)
class Tool:
    name: str
    input_model: type[Model]
    run: ToolFn
    timeout_s: float
    family: str


def default_tools(timeout_s: float = 15.0) -> dict[str, Tool]:
    implementations: dict[str, tuple[ToolFn, str]] = {
        "usage_coverage": (usage_coverage, "usage"),
        "cost_breakdown": (cost_breakdown, "usage"),
        "latency_profile": (latency_profile, "usage"),
        "model_substitution": (model_substitution, "savings"),
        "caching_opportunity": (caching_opportunity, "savings"),
        "batch_opportunity": (batch_opportunity, "savings"),
        "error_waste": (error_waste, "savings"),
        "prompt_outliers": (prompt_outliers, "savings"),
        "growth_projection": (growth_projection, "forecast"),
    }
    missing = set(TOOL_SPECS) - set(implementations)
    if missing:
        raise RuntimeError(f"tools declared in contracts but not implemented: {sorted(missing)}")
    return {
        name: Tool(name, TOOL_SPECS[name][0], fn, timeout_s * _SLOW.get(name, 1.0), family)
        for name, (fn, family) in implementations.items()
    }
