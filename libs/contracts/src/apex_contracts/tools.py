"""The tools agents may call: names, typed inputs and typed results.

Agents build inputs and read results with these models; the tools service implements
them. Every result cites the queries it ran (``queries``), so a figure in a report can be
traced to the SQL that produced it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from apex_contracts.envelope import Model
from apex_contracts.report import Millis, Money, Period


class QueryCitation(Model):
    sql: str
    elapsed_ms: float


class ToolResult(Model):
    queries: list[QueryCitation] = []


class PeriodInput(Model):
    period: Period = Period()
    models: list[str] = Field(default=[], max_length=20)


# --- usage_coverage ------------------------------------------------------------------


class CoverageInput(PeriodInput):
    pass


class ModelCount(Model):
    provider: str
    model: str
    requests: int


class CoverageResult(ToolResult):
    rows: int
    period: Period
    fields_present: dict[str, int]
    fields_missing: list[str]
    models: list[ModelCount] = []
    workloads: list[str] = []


# --- cost_breakdown ------------------------------------------------------------------

CostDimension = Literal["model", "workload", "provider", "day"]


class CostBreakdownInput(PeriodInput):
    group_by: CostDimension = "model"


class CostRow(Model):
    key: str
    provider: str | None = None
    requests: int
    cost_usd: Money
    prompt_tokens: int
    completion_tokens: int
    share: float


class CostBreakdownResult(ToolResult):
    group_by: CostDimension
    total_cost_usd: Money
    requests: int
    rows: list[CostRow]


# --- latency_profile -----------------------------------------------------------------


class LatencyInput(PeriodInput):
    group_by: Literal["model", "workload"] = "model"


class LatencyRow(Model):
    key: str
    provider: str | None = None
    requests: int
    measured: int
    p50_ms: Millis = None
    p95_ms: Millis = None
    p99_ms: Millis = None


class LatencyResult(ToolResult):
    group_by: Literal["model", "workload"]
    rows: list[LatencyRow]


ToolName = Literal["usage_coverage", "cost_breakdown", "latency_profile"]

TOOL_SPECS: dict[str, tuple[type[Model], type[ToolResult], str]] = {
    "usage_coverage": (
        CoverageInput,
        CoverageResult,
        "How much usage data the tenant has: rows, period, which fields are present.",
    ),
    "cost_breakdown": (
        CostBreakdownInput,
        CostBreakdownResult,
        "LLM spend grouped by model, workload, provider or day, with request and token counts.",
    ),
    "latency_profile": (
        LatencyInput,
        LatencyResult,
        "Latency percentiles (p50, p95, p99) by model or workload.",
    ),
}


def tool_schemas() -> list[dict[str, Any]]:
    """OpenAI-style function definitions for every tool."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": input_model.model_json_schema(),
            },
        }
        for name, (input_model, _result, description) in TOOL_SPECS.items()
    ]
