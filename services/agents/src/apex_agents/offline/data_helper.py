from __future__ import annotations

from typing import Any

from apex_agents.analyst.plan import tool_plan
from apex_agents.context import StepContext
from apex_agents.offline.data_request import data_request
from apex_contracts.report import DataHelperOutput, TriageOutput


class DataHelper:
    """Gathers the figures the intent needs, all tool calls at once (they are
    independent); where data is missing or partial, writes a precise request for it."""

    name = "data_helper"

    async def run(self, ctx: StepContext) -> tuple[DataHelperOutput, str]:
        triage = ctx.inputs.triage or TriageOutput.model_validate(_unknown_triage())
        request = request_for(triage)
        if request is not None:
            await ctx.think(f"Data request prepared: {request.reason}")
        if triage.sufficiency == "insufficient" or triage.intent == "out_of_scope":
            return DataHelperOutput(data_request=request), "Wrote a data request"
        calls = tool_plan(triage.intent, triage.period, triage.models, triage.growth_pct)
        await ctx.think("Running " + ", ".join(dict.fromkeys(name for name, _ in calls)) + " in parallel.")
        evidence = await ctx.call_tools(calls)
        failed = [e.tool for e in evidence if e.status != "ok"]
        if failed:
            await ctx.think(f"Some analyses failed and will be reported as gaps: {', '.join(failed)}.")
        return DataHelperOutput(evidence=evidence, data_request=request), summary(evidence)


def request_for(triage: TriageOutput) -> Any:
    if triage.sufficiency == "sufficient" and not triage.missing_fields:
        return None
    return data_request(
        triage.intent,
        triage.period,
        triage.missing_fields,
        have_rows=triage.sufficiency != "insufficient",
    )


def summary(evidence: list[Any]) -> str:
    failed = sum(1 for e in evidence if e.status != "ok")
    return f"Gathered {len(evidence) - failed} of {len(evidence)} analyses"


def _unknown_triage() -> dict[str, Any]:
    return {"intent": "general", "sufficiency": "insufficient"}
