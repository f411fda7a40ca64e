"""The tools agents may call: names, typed inputs and typed results.

Agents build inputs and read results with these models; the tools service implements
them. Every result cites the queries it ran (``queries``), so a figure in a report can be
traced to the SQL that produced it. Savings are given for the period analysed
(``saving_usd``) and scaled to a 30-day month (``monthly_saving_usd`` = saving x 30 /
``span_days``, the span between the first and last record analysed, at least one day).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import orjson
from pydantic import Field

from apex_contracts.envelope import Model
from apex_contracts.report import Confidence, Millis, Money, Period

MONTH_DAYS = 30


class QueryCitation(Model):
    sql: str
    elapsed_ms: float


class ToolResult(Model):
    queries: list[QueryCitation] = []
    # What priced the money this result states: "uploaded", the price table and its
    # version (pricing.TABLE), "tenant override", "unpriced" (rows that cost 0).
    price_sources: list[str] = []


class PeriodInput(Model):
    period: Period = Period()
    models: list[str] = Field(default=[], max_length=20)
    workloads: list[str] = Field(default=[], max_length=20)


class SavingsResult(ToolResult):
    span_days: float = 0.0
    total_saving_usd: Money = 0.0
    total_monthly_saving_usd: Money = 0.0


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
    span_days: float = 0.0
    active_days: int = 0
    fields_present: dict[str, int]
    fields_missing: list[str]
    models: list[ModelCount] = []
    workloads: list[str] = []
    unpriced_models: list[str] = []


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
    cached_tokens: int = 0
    share: float
    price_sources: list[str] = []


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


# --- model_substitution ----------------------------------------------------------------


class SubstitutionInput(PeriodInput):
    min_saving_share: float = Field(default=0.1, ge=0, le=1)
    include_lower_tier: bool = True


class SubstitutionRow(Model):
    workload: str
    provider: str
    model: str
    requests: int
    cost_usd: Money
    list_cost_usd: Money
    alternative: str
    similar: bool
    confidence: Confidence
    alternative_cost_usd: Money
    saving_usd: Money
    monthly_saving_usd: Money
    saving_share: float
    p50_ms: Millis = None
    p95_ms: Millis = None
    alternative_p50_ms: Millis = None
    alternative_p95_ms: Millis = None
    latency_effect: str


class SubstitutionResult(SavingsResult):
    rows: list[SubstitutionRow]
    unpriced_models: list[str] = []


# --- caching_opportunity ---------------------------------------------------------------


class CachingInput(PeriodInput):
    min_repeats: int = Field(default=2, ge=2, le=1000)


class CachingRow(Model):
    provider: str
    model: str
    requests: int
    hashed_requests: int
    repeated_requests: int
    repeat_share: float
    repeat_uncached_tokens: int
    input_price: float
    cached_price: float | None
    saving_usd: Money
    monthly_saving_usd: Money
    response_cache_saving_usd: Money
    monthly_response_cache_saving_usd: Money


class RepeatedPrompt(Model):
    prompt_hash: str
    model: str
    requests: int


class CachingResult(SavingsResult):
    rows: list[CachingRow]
    top_prompts: list[RepeatedPrompt] = []
    total_monthly_response_cache_saving_usd: Money = 0.0
    hashed_share: float = 0.0
    truncated: bool = False


# --- batch_opportunity -----------------------------------------------------------------


class BatchInput(PeriodInput):
    tolerant_workloads: list[str] = Field(default=[], max_length=50)
    off_hours_share_min: float = Field(default=0.6, ge=0, le=1)


class BatchRow(Model):
    workload: str
    provider: str
    model: str
    requests: int
    cost_usd: Money
    reason: str
    off_hours_share: float
    batch_discount: float
    saving_usd: Money
    monthly_saving_usd: Money
    p50_ms: Millis = None


class BatchResult(SavingsResult):
    rows: list[BatchRow]
    considered_workloads: int = 0


# --- error_waste -----------------------------------------------------------------------


class ErrorWasteInput(PeriodInput):
    pass


class ErrorRow(Model):
    workload: str
    provider: str
    model: str
    requests: int
    failed: int
    error_rate: float
    errors: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    wasted_cost_usd: Money
    monthly_wasted_usd: Money
    wasted_tokens: int
    advice: str


class ErrorWasteResult(SavingsResult):
    requests: int
    failed: int
    error_rate: float
    rows: list[ErrorRow]


# --- prompt_outliers -------------------------------------------------------------------


class OutlierInput(PeriodInput):
    factor: float = Field(default=3.0, ge=1.5, le=100)
    max_workloads: int = Field(default=10, ge=1, le=20)


class OutlierRow(Model):
    workload: str
    requests: int
    p50_tokens: int
    p95_tokens: int
    max_tokens: int
    threshold_tokens: int
    outliers: int
    outlier_share: float
    outlier_cost_usd: Money
    excess_tokens: int
    saving_usd: Money
    monthly_saving_usd: Money


class OutlierResult(SavingsResult):
    factor: float
    rows: list[OutlierRow]


# --- growth_projection -----------------------------------------------------------------


class GrowthInput(PeriodInput):
    monthly_growth_pct: float | None = Field(default=None, ge=-100, le=1000)


class DailyCost(Model):
    day: str
    cost_usd: Money
    requests: int


class GrowthResult(ToolResult):
    days_observed: int
    daily: list[DailyCost]
    current_monthly_cost_usd: Money
    current_monthly_requests: int
    observed_monthly_growth_pct: float | None
    growth_pct_used: float
    growth_source: Literal["given", "observed", "none"]
    projected_next_month_cost_usd: Money
    projected_next_month_requests: int
    confidence: Confidence


ToolName = Literal[
    "usage_coverage",
    "cost_breakdown",
    "latency_profile",
    "model_substitution",
    "caching_opportunity",
    "batch_opportunity",
    "error_waste",
    "prompt_outliers",
    "growth_projection",
]

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
    "model_substitution": (
        SubstitutionInput,
        SubstitutionResult,
        "For each workload and model, a cheaper current model of the same provider with similar "
        "capability (or one tier down), with the saving and the latency effect seen in the data.",
    ),
    "caching_opportunity": (
        CachingInput,
        CachingResult,
        "Repeated prompts (same prompt_hash) and what provider prompt caching, at cached-input "
        "prices, or a response cache would save.",
    ),
    "batch_opportunity": (
        BatchInput,
        BatchResult,
        "Latency-tolerant workloads (named, offline by name, or run off-hours) and the saving of "
        "the providers' Batch APIs.",
    ),
    "error_waste": (
        ErrorWasteInput,
        ErrorWasteResult,
        "Failed calls (error, rate_limited, timeout) by workload and model, and the money they wasted.",
    ),
    "prompt_outliers": (
        OutlierInput,
        OutlierResult,
        "Prompts far larger than their workload's median, and what trimming them to the median saves.",
    ),
    "growth_projection": (
        GrowthInput,
        GrowthResult,
        "Daily cost, the observed growth trend, and next month's cost at a given (or the observed) growth.",
    ),
}


def tool_schemas(names: list[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI-style function definitions for every tool (or those named), each a fresh
    copy: a model's call asks for them every time, and generating a JSON schema costs more
    than the rest of the request."""
    return [orjson.loads(_tool_schema(name)) for name in TOOL_SPECS if names is None or name in names]


@functools.cache
def _tool_schema(name: str) -> bytes:
    input_model, _result, description = TOOL_SPECS[name]
    return orjson.dumps(
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": input_model.model_json_schema(),
            },
        }
    )
