"""Every tool the service can run: its typed input, implementation, timeout and family."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apex_contracts.envelope import Model
from apex_contracts.tools import TOOL_SPECS, ToolResult
from apex_tools.catalog.costs import cost_breakdown
from apex_tools.catalog.coverage import usage_coverage
from apex_tools.catalog.latency import latency_profile
from apex_tools.ports import UsageQueries

ToolFn = Callable[[UsageQueries, str, Any], Awaitable[ToolResult]]


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
    }
    missing = set(TOOL_SPECS) - set(implementations)
    if missing:
        raise RuntimeError(f"tools declared in contracts but not implemented: {sorted(missing)}")
    return {
        name: Tool(name, TOOL_SPECS[name][0], fn, timeout_s, family)
        for name, (fn, family) in implementations.items()
    }
