from __future__ import annotations

from typing import Any

from apex_agents.context import StepContext
from apex_agents.offline.data_request import data_request
from apex_contracts.envelope import Model
from apex_contracts.report import DataHelperOutput, Intent, TriageOutput
from apex_contracts.tools import CostBreakdownInput, LatencyInput


class DataHelper:
    """Gathers the figures the intent needs, in parallel; where data is missing or
    partial, writes a precise request for it."""

    name = "data_helper"

    async def run(self, ctx: StepContext) -> tuple[DataHelperOutput, str]:
        triage = TriageOutput.model_validate(ctx.inputs.get("triage") or _unknown_triage())
        request = None
        if triage.sufficiency != "sufficient" or triage.missing_fields:
            request = data_request(
                triage.intent, triage.period, triage.missing_fields,
                have_rows=triage.sufficiency != "insufficient",
            )
            await ctx.think(f"Data request prepared: {request.reason}")
        if triage.sufficiency == "insufficient":
            return DataHelperOutput(data_request=request), "Wrote a data request"
        calls = _calls_for(triage.intent, triage)
        await ctx.think(f"Gathering {len(calls)} analyses in parallel.")
        evidence = await ctx.call_tools(calls)
        failed = [e.tool for e in evidence if e.status != "ok"]
        if failed:
            await ctx.think(f"Some analyses failed and will be reported as gaps: {', '.join(failed)}.")
        summary = f"Gathered {len(evidence) - len(failed)} of {len(evidence)} analyses"
        return DataHelperOutput(evidence=evidence, data_request=request), summary


def _calls_for(intent: Intent, triage: TriageOutput) -> list[tuple[str, Model]]:
    scope: dict[str, Any] = {"period": triage.period, "models": triage.models}
    by_model = ("cost_breakdown", CostBreakdownInput(group_by="model", **scope))
    by_workload = ("cost_breakdown", CostBreakdownInput(group_by="workload", **scope))
    latency = ("latency_profile", LatencyInput(group_by="model", **scope))
    plans: dict[Intent, list[tuple[str, Model]]] = {
        "cost": [by_model, by_workload, latency],
        "latency": [latency, ("latency_profile", LatencyInput(group_by="workload", **scope)), by_model],
        "model_choice": [by_model, by_workload, latency],
        "caching": [by_model, by_workload, latency],
        "forecast": [("cost_breakdown", CostBreakdownInput(group_by="day", **scope)), by_model, latency],
        "usage_overview": [by_model, by_workload, latency],
        "general": [by_model, latency],
    }
    return plans.get(intent, [by_model, latency])


def _unknown_triage() -> dict[str, Any]:
    return {"intent": "general", "sufficiency": "insufficient"}
