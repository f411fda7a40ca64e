"""The analyst's deterministic parts: the figure validator, the report built from tool
results (recommendations citing their calls), the template text, the reporting agent's
reject-and-rewrite loop, and the rules for follow-ups and growth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apex_agents.analyst.compose import compose
from apex_agents.analyst.figures import stated, unsupported
from apex_agents.analyst.plan import sufficiency, tool_plan
from apex_agents.analyst.recommend import build_report
from apex_agents.offline.reporting import Draft, Reporting
from apex_agents.offline.rules import extract_growth
from apex_contracts import ErrorInfo, StepFailure, derive_id
from apex_contracts.report import Period, Report, ToolEvidence, TriageOutput
from apex_contracts.tools import CoverageResult

RUN = "run_01M8600000000000000000000A"
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC)


def call(n: int) -> str:
    return derive_id("call", RUN, "2", str(n))


def evidence(tool: str, n: int, result: dict[str, Any]) -> ToolEvidence:
    return ToolEvidence(call_id=call(n), tool=tool, status="ok", result={"queries": [], **result})


COVERAGE = {
    "rows": 1500,
    "period": {"start": START.isoformat(), "end": END.isoformat()},
    "span_days": 30.0,
    "active_days": 30,
    "fields_present": {"latency_ms": 1500, "workload": 1500, "prompt_hash": 1500},
    "fields_missing": [],
    "unpriced_models": [],
}
COSTS = {
    "price_sources": ["genai-prices 0.2.3"],
    "group_by": "model",
    "total_cost_usd": 1234.56,
    "requests": 1500,
    "rows": [
        {
            "key": "claude-opus-4-1",
            "provider": "anthropic",
            "requests": 500,
            "cost_usd": 1000.0,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "share": 0.81,
        },
        {
            "key": "gpt-4o",
            "provider": "openai",
            "requests": 1000,
            "cost_usd": 234.56,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "share": 0.19,
        },
    ],
}
LATENCY = {
    "group_by": "model",
    "rows": [
        {
            "key": "claude-opus-4-1",
            "provider": "anthropic",
            "requests": 500,
            "measured": 500,
            "p50_ms": 20150.4,
            "p95_ms": 30999.6,
            "p99_ms": 35000.0,
        },
        {
            "key": "gpt-4o",
            "provider": "openai",
            "requests": 1000,
            "measured": 1000,
            "p50_ms": 900.0,
            "p95_ms": 2100.0,
            "p99_ms": 3000.0,
        },
    ],
}
SUBSTITUTION = {
    "span_days": 30.0,
    "total_saving_usd": 666.67,
    "total_monthly_saving_usd": 666.67,
    "rows": [
        {
            "workload": "code-review",
            "provider": "anthropic",
            "model": "claude-opus-4-1",
            "requests": 500,
            "cost_usd": 1000.0,
            "list_cost_usd": 1000.0,
            "alternative": "claude-opus-4-5",
            "similar": True,
            "confidence": "medium",
            "alternative_cost_usd": 333.33,
            "saving_usd": 666.67,
            "monthly_saving_usd": 666.67,
            "saving_share": 0.6667,
            "latency_effect": "not measured yet (you do not use it)",
        }
    ],
}
BATCH = {
    "span_days": 30.0,
    "total_saving_usd": 0.004,
    "total_monthly_saving_usd": 0.0,
    "considered_workloads": 2,
    "rows": [
        {
            "workload": "nightly",
            "provider": "openai",
            "model": "gpt-4o",
            "requests": 3,
            "cost_usd": 0.01,
            "reason": "its name says it is offline work",
            "off_hours_share": 1.0,
            "batch_discount": 0.5,
            "saving_usd": 0.0,
            "monthly_saving_usd": 0.0,
        }
    ],
}


def triage(**changes: Any) -> TriageOutput:
    base = TriageOutput(
        intent="cost", sufficiency="sufficient", evidence=[evidence("usage_coverage", 0, COVERAGE)]
    )
    return base.model_copy(update=changes)


def gathered() -> list[ToolEvidence]:
    return [
        evidence("cost_breakdown", 1, COSTS),
        evidence("latency_profile", 2, LATENCY),
        evidence("model_substitution", 3, SUBSTITUTION),
        evidence("batch_opportunity", 4, BATCH),
    ]


def test_stated_numbers_are_not_names_dates_times_or_versions() -> None:
    text = (
        "**1,500 requests** cost **$1,234.56** from 2026-01-01 to 2026-01-31 on gpt-4o and "
        "claude-opus-4-1 (p95 of 31,000 ms, 81.0%), at 06:00 UTC; trend -5.5% (genai-prices 0.2.3)."
    )
    assert [(n.text, n.value, n.decimals, n.kind) for n in stated(text)] == [
        ("1,500", 1500, 0, "count"),
        ("$1,234.56", 1234.56, 2, "money"),
        ("31,000", 31000, 0, "ms"),
        ("81.0%", 81.0, 1, "percent"),
        ("-5.5%", -5.5, 1, "percent"),
    ]


def test_a_number_is_supported_by_a_figure_of_its_value_at_its_precision() -> None:
    report = build_report(triage(), gathered(), [])
    ok = "In total, 1,500 requests cost $1,234.56; claude-opus-4-1 has a p95 latency of 31,000 ms."
    assert unsupported(ok, report.figures) == []
    wrong = unsupported("In total you spent $1,234.57 over 77 requests.", report.figures)
    assert [w.split(" ")[0] for w in wrong] == ["$1,234.57", "77"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # $1,000.00 is what claude-opus-4-1 costs, not gpt-4o
        ("gpt-4o costs $1,000.00 a month.", "not about gpt-4o"),
        # 81.0% is claude-opus-4-1's share of spend, not a saving
        ("Moving claude-opus-4-1 elsewhere saves 81.0%.", "not a saving figure"),
        # 1,000 is how many requests gpt-4o served, not how many failed
        ("1,000 calls to gpt-4o failed.", "not a failed_calls figure"),
        ("gpt-4o had 1,000 failed calls.", "not a failed_calls figure"),
    ],
)
def test_a_mislabelled_figure_is_refused(text: str, reason: str) -> None:
    report = build_report(triage(), gathered(), [])
    (refusal,) = unsupported(text, report.figures)
    assert reason in refusal, refusal


@pytest.mark.parametrize(
    "text",
    [
        "claude-opus-4-1 costs $1,000.00 over the period.",
        "claude-opus-4-1 accounts for 81.0% of spend.",
        "gpt-4o served 1,000 requests.",
        "Moving code-review from claude-opus-4-1 to claude-opus-4-5 saves about $666.67 a month.",
        "For code-review, claude-opus-4-5 costs 66.7% less at list prices.",
    ],
)
def test_the_same_figures_rightly_labelled_pass(text: str) -> None:
    report = build_report(triage(), gathered(), [])
    assert unsupported(text, report.figures) == []


def test_each_figure_names_its_source_call_and_field_and_money_its_price_sources() -> None:
    report = build_report(triage(), gathered(), [])
    cost = next(f for f in report.figures if f.measure == "cost" and f.entity.model == "gpt-4o")
    assert (cost.value, cost.unit, cost.source.call_id, cost.source.tool, cost.source.field) == (
        234.56,
        "usd",
        call(1),
        "cost_breakdown",
        "rows[1].cost_usd",
    )
    assert cost.prices == ["genai-prices 0.2.3"] and report.price_sources == ["genai-prices 0.2.3"]
    share = next(f for f in report.figures if f.measure == "share" and f.entity.model == "gpt-4o")
    assert share.prices == [], "a share is not money"


def test_the_report_comes_from_the_tool_results_and_cites_their_calls() -> None:
    report = build_report(triage(), gathered(), [])
    assert (report.total_cost_usd, report.requests) == (1234.56, 1500)
    assert [(m.model, m.cost_usd, m.p50_latency_ms, m.p95_latency_ms) for m in report.by_model] == [
        ("claude-opus-4-1", 1000.0, 20150, 31000),
        ("gpt-4o", 234.56, 900, 2100),
    ]
    (rec,) = report.recommendations  # the batch saving rounds to nothing a month: left out
    assert (rec.kind, rec.title, rec.est_monthly_savings_usd, rec.confidence) == (
        "model_substitution",
        "Move code-review from claude-opus-4-1 to claude-opus-4-5",
        666.67,
        "medium",
    )
    assert rec.evidence == [call(3), call(1)], "the substitution call, and the costs it is measured against"
    assert "66.7%" in rec.rationale
    assert (rec.workload, rec.model, rec.provider) == ("code-review", "claude-opus-4-1", "anthropic")
    assert rec.target is not None and (rec.target.kind, rec.target.model) == ("model", "claude-opus-4-5")
    assert rec.saving is not None and (rec.saving.value, rec.saving.unit, rec.saving.measure) == (
        666.67,
        "usd_per_month",
        "saving",
    )
    assert (rec.saving.source.call_id, rec.saving.source.field) == (call(3), "rows[0].monthly_saving_usd")
    assert report.period == Period(start=START, end=END) and report.data_gaps == []


def test_gaps_name_missing_fields_unpriced_models_and_failed_analyses() -> None:
    failed = ToolEvidence(call_id=call(9), tool="caching_opportunity", status="error")
    coverage = {**COVERAGE, "unpriced_models": ["acme-ft-1"]}
    report = build_report(
        triage(missing_fields=["latency_ms"], evidence=[evidence("usage_coverage", 0, coverage)]),
        [*gathered(), failed],
        [StepFailure(agent="data_helper", error=ErrorInfo(code="agent_failed", message="x", retryable=True))],
    )
    assert report.data_gaps == [
        "latency_ms is missing, so latency percentiles and latency effects are unknown",
        "no price for acme-ft-1 in the price table or your overrides: their calls count what you uploaded, "
        "else nothing (set a price override)",
        "the caching_opportunity analysis failed",
        "the data_helper agent failed",
    ]


def test_the_template_states_the_report_and_only_supported_figures() -> None:
    report = build_report(triage(), gathered(), [])
    text = compose("cost", report, [triage().evidence[0], *gathered()], None)
    assert unsupported(text, report.figures) == []
    assert (
        "$1,234.56" in text
        and "**$666.67 a month**" in text
        and "| claude-opus-4-1 | anthropic | 500 |" in text
    )


class Scripted:
    """A writer that states an invented figure first, then writes correctly."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.feedback: list[list[str] | None] = []

    async def write(self, ctx: Any, draft: Draft, feedback: list[str] | None) -> str:
        self.feedback.append(feedback)
        return self.texts[len(self.feedback) - 1]


class Thinking:
    def __init__(self) -> None:
        self.thoughts: list[str] = []

    async def think(self, text: str) -> None:
        self.thoughts.append(text)


@pytest.mark.parametrize(
    ("texts", "kept"),
    [
        (["You spend $9,999.99.", "You spend $1,234.56."], "You spend $1,234.56."),
        (["You spend $9,999.99.", "Still $8,888.88."], None),
    ],
)
async def test_a_text_with_an_unsupported_figure_is_rewritten(texts: list[str], kept: str | None) -> None:
    report = build_report(triage(), gathered(), [])
    draft = Draft("cost", report, gathered(), None)
    writer = Scripted(texts)
    ctx = Thinking()
    text = await Reporting(writer=writer).checked_text(ctx, draft)  # type: ignore[arg-type]
    assert writer.feedback == [None, ["$9,999.99 (no figure of the report has this value)"]], (
        "the rewrite is told which figure was wrong, and why"
    )
    assert text == (kept or draft.template()), "a failed rewrite falls back to the template"
    assert "$9,999.99" in ctx.thoughts[0]


def test_sufficiency_by_intent() -> None:
    full = CoverageResult.model_validate(COVERAGE)
    no_latency = full.model_copy(update={"fields_present": {"workload": 1500, "prompt_hash": 1500}})
    empty = full.model_copy(update={"rows": 0})
    short = full.model_copy(update={"active_days": 5})
    assert sufficiency("cost", full) == ("sufficient", [])
    assert sufficiency("cost", no_latency) == ("partial", ["latency_ms"])
    assert sufficiency("cost", empty)[0] == "insufficient"
    assert sufficiency("forecast", short) == ("partial", ["ts"])
    assert sufficiency("caching", full) == ("partial", ["cached_tokens"])


def test_each_intent_plans_its_tools_and_a_given_growth_reaches_the_projection() -> None:
    names = {
        intent: [n for n, _ in tool_plan(intent, Period(), [])] for intent in ("cost", "forecast", "caching")
    }
    assert names["cost"][:2] == ["cost_breakdown", "latency_profile"]
    assert {
        "model_substitution",
        "caching_opportunity",
        "batch_opportunity",
        "error_waste",
        "prompt_outliers",
    } <= set(names["cost"])
    assert "growth_projection" in names["forecast"] and "caching_opportunity" in names["caching"]
    growth = dict(tool_plan("forecast", Period(), ["gpt-4o"], 20.0))["growth_projection"]
    assert growth.model_dump()["monthly_growth_pct"] == 20.0 and growth.model_dump()["models"] == ["gpt-4o"]
    assert extract_growth("what will next month cost at 20% growth?") == 20.0
    assert extract_growth("if traffic grows by 12.5%") == 12.5
    assert extract_growth("what does gpt-4o cost?") is None


def test_a_report_stored_before_figures_still_reads() -> None:
    """Reports in the event log from before figures (no figures, no target or saving)."""
    old = {
        "period": {"start": START.isoformat(), "end": END.isoformat()},
        "total_cost_usd": 12.5,
        "requests": 10,
        "by_model": [],
        "recommendations": [
            {
                "id": "rec-1",
                "kind": "batch_api",
                "title": "Run nightly through the openai Batch API",
                "rationale": "…",
                "est_monthly_savings_usd": 3.0,
                "confidence": "medium",
                "evidence": [call(1)],
            }
        ],
        "data_gaps": [],
    }
    report = Report.model_validate(old)
    assert report.figures == [] and report.recommendations[0].saving is None
    assert Report.model_validate_json(report.model_dump_json()) == report
