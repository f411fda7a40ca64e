"""What each intent needs: the fields without which the answer is partial, and the tool
calls that answer it (independent of each other, so they run in parallel). Both brains
use this plan: the offline planner as is, the language model as its floor."""

from __future__ import annotations

from apex_contracts.envelope import Model
from apex_contracts.report import Intent, Period, Sufficiency
from apex_contracts.tools import (
    BatchInput,
    CachingInput,
    CostBreakdownInput,
    CoverageResult,
    ErrorWasteInput,
    GrowthInput,
    LatencyInput,
    OutlierInput,
    SubstitutionInput,
)

REQUIRED_FIELDS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens")
# Fields without which an intent's answer is partial (the report shows latency for every
# model, so every data question needs latency_ms).
NEEDED_FIELDS: dict[Intent, tuple[str, ...]] = {
    "cost": ("latency_ms", "workload", "prompt_hash"),
    "latency": ("latency_ms",),
    "model_choice": ("latency_ms", "workload"),
    "caching": ("latency_ms", "prompt_hash", "cached_tokens"),
    "usage_overview": ("latency_ms", "workload"),
    "forecast": ("latency_ms",),
    "general": ("latency_ms", "workload", "prompt_hash"),
    "out_of_scope": (),
}
FORECAST_MIN_DAYS = 14
SAVINGS_TOOLS = (
    "model_substitution",
    "caching_opportunity",
    "batch_opportunity",
    "error_waste",
    "prompt_outliers",
)


def sufficiency(intent: Intent, coverage: CoverageResult | None) -> tuple[Sufficiency, list[str]]:
    """Whether the data can answer the intent, and the needed fields it lacks."""
    if coverage is None or coverage.rows == 0:
        return "insufficient", list(REQUIRED_FIELDS)
    missing = [f for f in NEEDED_FIELDS[intent] if coverage.fields_present.get(f, 0) == 0]
    if intent == "forecast" and coverage.active_days < FORECAST_MIN_DAYS:
        missing.append("ts")  # more days of it
    return ("partial" if missing else "sufficient"), missing


def tool_plan(
    intent: Intent, period: Period, models: list[str], growth_pct: float | None = None
) -> list[tuple[str, Model]]:
    """The tool calls that answer ``intent``, most important first."""
    scope = {"period": period, "models": models}
    core: list[tuple[str, Model]] = [
        ("cost_breakdown", CostBreakdownInput(group_by="model", **scope)),
        ("latency_profile", LatencyInput(group_by="model", **scope)),
    ]
    by_workload = ("cost_breakdown", CostBreakdownInput(group_by="workload", **scope))
    savings: dict[str, tuple[str, Model]] = {
        "model_substitution": ("model_substitution", SubstitutionInput(**scope)),
        "caching_opportunity": ("caching_opportunity", CachingInput(**scope)),
        "batch_opportunity": ("batch_opportunity", BatchInput(**scope)),
        "error_waste": ("error_waste", ErrorWasteInput(**scope)),
        "prompt_outliers": ("prompt_outliers", OutlierInput(**scope)),
    }
    growth = ("growth_projection", GrowthInput(monthly_growth_pct=growth_pct, **scope))
    extra: list[tuple[str, Model]]
    match intent:
        case "cost" | "general":
            extra = [by_workload, *savings.values()]
        case "latency":
            extra = [
                ("latency_profile", LatencyInput(group_by="workload", **scope)),
                savings["model_substitution"],
                savings["error_waste"],
            ]
        case "model_choice":
            extra = [by_workload, savings["model_substitution"]]
        case "caching":
            extra = [savings["caching_opportunity"], savings["prompt_outliers"]]
        case "usage_overview":
            extra = [
                by_workload,
                ("cost_breakdown", CostBreakdownInput(group_by="provider", **scope)),
                savings["error_waste"],
                growth,
            ]
        case "forecast":
            extra = [by_workload, growth]
        case _:
            extra = []
    return core + extra
