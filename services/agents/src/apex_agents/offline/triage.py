from __future__ import annotations

from apex_agents.context import StepContext
from apex_agents.offline.rules import classify, extract_models, extract_period
from apex_contracts.report import Intent, Sufficiency, TriageOutput
from apex_contracts.tools import CoverageInput, CoverageResult

# Fields without which an intent can only get a partial answer.
NEEDED_FIELDS: dict[Intent, tuple[str, ...]] = {
    "latency": ("latency_ms",),
    "caching": ("prompt_hash", "cached_tokens"),
    "model_choice": ("workload",),
    "forecast": (),
    "cost": (),
    "usage_overview": (),
    "general": (),
    "out_of_scope": (),
}
_LABELS = {
    "cost": "where the money goes", "latency": "latency", "model_choice": "model choice",
    "caching": "caching", "usage_overview": "a usage overview", "forecast": "a forecast",
    "general": "a general question", "out_of_scope": "something outside LLM usage",
}


class Triage:
    """Classifies the question, reads the time range and models it names, and checks with
    ``usage_coverage`` whether the tenant's data can answer it."""

    name = "triage"

    async def run(self, ctx: StepContext) -> tuple[TriageOutput, str]:
        intent = classify(ctx.question)
        period = extract_period(ctx.question, ctx.now)
        models = extract_models(ctx.question)
        await ctx.think(f"The question is about {_LABELS[intent]}.")
        if intent == "out_of_scope":
            output = TriageOutput(intent=intent, period=period, sufficiency="insufficient")
            return output, "Out of scope"
        evidence = await ctx.call_tool("usage_coverage", CoverageInput(period=period, models=models))
        coverage = CoverageResult.model_validate(evidence.result) if evidence.result else None
        sufficiency, missing = _sufficiency(intent, coverage)
        rows = coverage.rows if coverage else 0
        await ctx.think(f"{rows} usage records in range; data is {sufficiency}.")
        output = TriageOutput(
            intent=intent, period=period, models=models, sufficiency=sufficiency,
            missing_fields=missing, evidence=[evidence],
        )
        return output, f"Intent {intent}, data {sufficiency}"


def _sufficiency(intent: Intent, coverage: CoverageResult | None) -> tuple[Sufficiency, list[str]]:
    if coverage is None or coverage.rows == 0:
        return "insufficient", ["ts", "provider", "model", "prompt_tokens", "completion_tokens"]
    needed = NEEDED_FIELDS[intent]
    missing = [f for f in needed if coverage.fields_present.get(f, 0) == 0]
    if needed and len(missing) == len(needed):
        return "partial", missing
    return "sufficient", [f for f in missing]
