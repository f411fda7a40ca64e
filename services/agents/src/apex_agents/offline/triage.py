from __future__ import annotations

from apex_agents.analyst.plan import sufficiency
from apex_agents.context import StepContext
from apex_agents.offline.rules import classify, extract_growth, extract_models, extract_period
from apex_contracts.report import Intent, Period, TriageOutput
from apex_contracts.tools import CoverageInput, CoverageResult

LABELS: dict[Intent, str] = {
    "cost": "where the money goes",
    "latency": "latency",
    "model_choice": "model choice",
    "caching": "caching",
    "usage_overview": "a usage overview",
    "forecast": "a forecast",
    "general": "a general question",
    "out_of_scope": "something outside LLM usage",
}


class Triage:
    """Classifies the question, reads the time range and models it names, and checks with
    ``usage_coverage`` whether the tenant's data can answer it. A follow-up that names no
    topic of its own ("and last week?") keeps the topic of the thread's last question."""

    name = "triage"

    async def run(self, ctx: StepContext) -> tuple[TriageOutput, str]:
        intent, period, models = read_question(ctx.question, ctx.history, ctx)
        await ctx.think(f"The question is about {LABELS[intent]}.")
        if intent == "out_of_scope":
            return TriageOutput(intent=intent, period=period, sufficiency="insufficient"), "Out of scope"
        return await check_data(ctx, intent, period, models, extract_growth(ctx.question))


def read_question(
    question: str, history: list[dict[str, str]], ctx: StepContext
) -> tuple[Intent, Period, list[str]]:
    intent = classify(question)
    period = extract_period(question, ctx.now)
    models = extract_models(question)
    if history and intent == "general":
        earlier = history[-1].get("question", "")
        intent = classify(earlier)
        period = period if period.start or period.end else extract_period(earlier, ctx.now)
        models = models or extract_models(earlier)
    return intent, period, models


async def check_data(
    ctx: StepContext, intent: Intent, period: Period, models: list[str], growth_pct: float | None = None
) -> tuple[TriageOutput, str]:
    """Runs ``usage_coverage`` for the question's scope and decides sufficiency."""
    evidence = await ctx.call_tool("usage_coverage", CoverageInput(period=period, models=models))
    coverage = CoverageResult.model_validate(evidence.result) if evidence.result else None
    enough, missing = sufficiency(intent, coverage)
    rows = coverage.rows if coverage else 0
    await ctx.think(
        f"{rows:,} usage records in range; the data is {enough}"
        + (f" (missing: {', '.join(missing)})." if missing and rows else ".")
    )
    output = TriageOutput(
        intent=intent,
        period=period,
        models=models,
        growth_pct=growth_pct,
        sufficiency=enough,
        missing_fields=missing,
        evidence=[evidence],
    )
    return output, f"Intent {intent}, data {enough}"
