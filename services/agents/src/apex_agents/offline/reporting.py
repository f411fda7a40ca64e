from __future__ import annotations

from typing import Any

from apex_agents.context import StepContext
from apex_contracts.report import (
    AssistantResponse,
    DataHelperOutput,
    DataRequest,
    ModelUsage,
    Period,
    Report,
    ReportingOutput,
    ToolEvidence,
    TriageOutput,
)
from apex_contracts.tools import CostBreakdownResult, CoverageResult, LatencyResult

OUT_OF_SCOPE_TEXT = (
    "I can only help with your LLM workload: where the money and the latency go, which "
    "models to use, caching, batching and forecasts. Ask me about those."
)


class Reporting:
    """Always runs last and always answers: a full report, a partial one naming its gaps,
    or a guidance report (``needs_data``) saying exactly what data to upload."""

    name = "reporting"

    async def run(self, ctx: StepContext) -> tuple[ReportingOutput, str]:
        triage = TriageOutput.model_validate(
            ctx.inputs.get("triage") or {"intent": "general", "sufficiency": "insufficient"}
        )
        helper = DataHelperOutput.model_validate(ctx.inputs.get("data_helper") or {})
        failures = ctx.inputs.get("failures") or []
        if triage.intent == "out_of_scope":
            report = Report(period=triage.period, total_cost_usd=0, requests=0)
            response = AssistantResponse(text=OUT_OF_SCOPE_TEXT, report=report, kind="out_of_scope")
            return ReportingOutput(status="completed", response=response), "Out of scope answer"
        if triage.sufficiency == "insufficient":
            await ctx.think("No usable data: writing a guidance report with the data request.")
            return _guidance(triage, helper.data_request), "Guidance report (needs data)"
        await ctx.think("Composing the report from the tool results.")
        report = _report(triage, helper.evidence, failures)
        kind = "partial" if report.data_gaps else "full"
        text = _text(report, helper.data_request)
        response = AssistantResponse(text=text, report=report, kind=kind, data_request=helper.data_request)
        return ReportingOutput(status="completed", response=response), f"{kind.capitalize()} report"


def _guidance(triage: TriageOutput, request: DataRequest | None) -> ReportingOutput:
    report = Report(
        period=triage.period, total_cost_usd=0, requests=0,
        data_gaps=["no usage data" if request is None else request.reason],
    )
    lines = [
        "## I need your usage data first",
        "",
        request.reason if request else "There is no usage data for this period yet.",
        "",
    ]
    if request is not None:
        lines += ["**Fields:** " + ", ".join(request.fields), "", "**How to export it:**"]
        lines += [f"- **{h.provider}**: {h.steps}" for h in request.how_to_export]
        lines += ["", "**Formats:**"] + [f"- {f}" for f in request.formats]
        lines += ["", f"**Upload:** {request.upload}"]
    response = AssistantResponse(text="\n".join(lines), report=report, kind="guidance", data_request=request)
    return ReportingOutput(status="needs_data", response=response)


def _find(evidence: list[ToolEvidence], tool: str, **match: Any) -> dict[str, Any] | None:
    for item in evidence:
        if item.tool == tool and item.status == "ok" and item.result is not None and all(
            item.result.get(k) == v for k, v in match.items()
        ):
            return item.result
    return None


def _report(triage: TriageOutput, evidence: list[ToolEvidence], failures: list[Any]) -> Report:
    coverage_raw = _find(triage.evidence, "usage_coverage")
    coverage = CoverageResult.model_validate(coverage_raw) if coverage_raw else None
    costs_raw = _find(evidence, "cost_breakdown", group_by="model")
    costs = CostBreakdownResult.model_validate(costs_raw) if costs_raw else None
    latency_raw = _find(evidence, "latency_profile", group_by="model")
    latency = {r.key: r for r in LatencyResult.model_validate(latency_raw).rows} if latency_raw else {}
    by_model = [
        ModelUsage(
            model=row.key, provider=row.provider or "", requests=row.requests, cost_usd=row.cost_usd,
            p50_latency_ms=latency[row.key].p50_ms if row.key in latency else None,
            p95_latency_ms=latency[row.key].p95_ms if row.key in latency else None,
        )
        for row in (costs.rows if costs else [])
    ]
    gaps = [f"missing field: {f}" for f in triage.missing_fields]
    gaps += [f"analysis failed: {e.tool}" for e in evidence if e.status != "ok"]
    gaps += [f"agent failed: {f.get('agent')}" for f in failures]
    return Report(
        period=coverage.period if coverage else Period(),
        total_cost_usd=costs.total_cost_usd if costs else 0,
        requests=costs.requests if costs else (coverage.rows if coverage else 0),
        by_model=by_model,
        data_gaps=gaps,
    )


def money(value: float) -> str:
    return f"${value:,.2f}"


def _text(report: Report, request: DataRequest | None) -> str:
    period = ""
    if report.period.start and report.period.end:
        period = f" from {report.period.start.date().isoformat()} to {report.period.end.date().isoformat()}"
    lines = [
        "## Your LLM usage",
        "",
        f"**{report.requests:,} requests** cost **{money(report.total_cost_usd)}**{period}.",
        "",
    ]
    if report.by_model:
        lines += ["| Model | Provider | Requests | Cost | p50 latency | p95 latency |", "|---|---|---:|---:|---:|---:|"]
        for m in report.by_model:
            p50 = f"{m.p50_latency_ms:.0f} ms" if m.p50_latency_ms is not None else "n/a"
            p95 = f"{m.p95_latency_ms:.0f} ms" if m.p95_latency_ms is not None else "n/a"
            lines.append(f"| {m.model} | {m.provider} | {m.requests:,} | {money(m.cost_usd)} | {p50} | {p95} |")
        lines.append("")
    if report.data_gaps:
        lines += ["**Data gaps:** " + "; ".join(report.data_gaps) + "."]
        if request is not None:
            lines += ["", f"To close them: upload {', '.join(request.fields)} ({request.upload})."]
    return "\n".join(lines)
