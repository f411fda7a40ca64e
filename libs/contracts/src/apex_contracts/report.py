"""The analyst's answer: the report schema and what each agent hands to the next.

Money is rounded to cents and latency to whole milliseconds where the models are built
(``money`` / ``millis``), so every producer rounds the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from apex_contracts.envelope import AgentName, Model
from apex_contracts.figures import Figure
from apex_contracts.ids import CallId


def _cents(value: float) -> float:
    return round(float(value) + 0.0, 2)


def _whole_ms(value: float | None) -> int | None:
    return None if value is None else round(value)


Money = Annotated[float, AfterValidator(_cents)]
Millis = Annotated[float | None, AfterValidator(_whole_ms)]

Intent = Literal[
    "cost",
    "latency",
    "model_choice",
    "caching",
    "usage_overview",
    "forecast",
    "general",
    "out_of_scope",
]
Sufficiency = Literal["sufficient", "partial", "insufficient"]
Confidence = Literal["low", "medium", "high"]
ResponseStatus = Literal["completed", "needs_data"]
ReportKind = Literal["full", "partial", "guidance", "out_of_scope"]


class Period(Model):
    start: datetime | None = None
    end: datetime | None = None


class ModelUsage(Model):
    model: str
    provider: str
    requests: int
    cost_usd: Money
    p50_latency_ms: Millis = None
    p95_latency_ms: Millis = None


# What a recommendation does (docs/analyst.md lists them with their targets).
RecommendationKind = Literal[
    "model_substitution",  # target: a model
    "prompt_caching",  # target: the provider's prompt cache
    "response_caching",  # target: an application response cache
    "batch_api",  # target: the batch service tier
    "error_reduction",  # target: fewer failed calls
    "prompt_trimming",  # target: prompts at most the workload's median size
]
TargetKind = Literal["model", "prompt_cache", "response_cache", "service_tier", "failed_calls", "prompt_size"]


class Target(Model):
    """What a recommendation moves the workload to."""

    kind: TargetKind
    model: str | None = None  # kind model
    service_tier: str | None = None  # kind service_tier: "batch"
    max_prompt_tokens: int | None = None  # kind prompt_size


class Recommendation(Model):
    id: str
    kind: RecommendationKind
    title: str
    rationale: str
    est_monthly_savings_usd: Money
    confidence: Confidence
    evidence: list[CallId] = Field(min_length=1)
    # Added with figures (older reports lack them): what it acts on, what it moves to,
    # and its saving as a figure (unit usd_per_month, measure saving).
    workload: str | None = None
    model: str | None = None
    provider: str | None = None
    target: Target | None = None
    saving: Figure | None = None


class Report(Model):
    period: Period
    total_cost_usd: Money
    requests: int
    by_model: list[ModelUsage] = []
    recommendations: list[Recommendation] = []
    data_gaps: list[str] = []
    # Added with figures: every number the text states, bound to its source, and what
    # priced the money (the price table and its version, tenant overrides, uploads).
    figures: list[Figure] = []
    price_sources: list[str] = []


class ExportHowTo(Model):
    provider: str
    steps: str


class DataRequest(Model):
    """What the data helper asks the user to upload, precisely enough to act on."""

    reason: str
    fields: list[str]
    period: Period
    how_to_export: list[ExportHowTo]
    formats: list[str]
    upload: str = "POST /api/v1/usage (JSON, NDJSON or CSV) or the upload button in the chat"


class AssistantResponse(Model):
    text: str
    report: Report
    kind: ReportKind = "full"
    data_request: DataRequest | None = None


class ToolEvidence(Model):
    """A tool result an agent relies on, named by the call that produced it."""

    call_id: CallId
    tool: str
    status: Literal["ok", "error"]
    result: dict[str, Any] | None = None


class SupervisorOutput(Model):
    agent: Literal["supervisor"] = "supervisor"
    plan: list[AgentName]
    note: str = ""


class TriageOutput(Model):
    agent: Literal["triage"] = "triage"
    intent: Intent
    period: Period = Period()
    models: list[str] = []
    growth_pct: float | None = None  # a monthly growth the question gives ("at 20% growth")
    sufficiency: Sufficiency
    missing_fields: list[str] = []
    evidence: list[ToolEvidence] = []


class DataHelperOutput(Model):
    agent: Literal["data_helper"] = "data_helper"
    evidence: list[ToolEvidence] = []
    data_request: DataRequest | None = None


class ReportingOutput(Model):
    agent: Literal["reporting"] = "reporting"
    status: ResponseStatus
    response: AssistantResponse


AgentOutput = Annotated[
    SupervisorOutput | TriageOutput | DataHelperOutput | ReportingOutput,
    Field(discriminator="agent"),
]
