"""The report as markdown for people: only figures that are in the tool results, each
formatted the way the validator reads it back (money in cents, shares in tenths of a
percent, latency in whole ms). The offline brain's text, and the LLM brain's fallback."""

from __future__ import annotations

from apex_agents.analyst.recommend import find, pct, usd
from apex_contracts.report import DataRequest, Intent, Report, ToolEvidence
from apex_contracts.tools import CostBreakdownResult, ErrorWasteResult, GrowthResult, LatencyResult

INTRO: dict[Intent, str] = {
    "cost": "Here is where your LLM spend goes and how to cut it.",
    "latency": "Here is where your latency comes from.",
    "model_choice": "Here is how your models compare and which cheaper ones fit each workload.",
    "caching": "Here is what caching repeated prompts would save.",
    "usage_overview": "Here is an overview of your LLM usage.",
    "forecast": "Here is what your LLM spend is heading for.",
    "general": "Here is what your usage data says.",
    "out_of_scope": "",
}


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def compose(
    intent: Intent, report: Report, evidence: list[ToolEvidence], request: DataRequest | None, note: str = ""
) -> str:
    lines = [f"## {'Partial report' if report.data_gaps else 'Your LLM usage'}", ""]
    if note:
        lines += [f"_{note}_", ""]
    lines += [INTRO[intent], "", _headline(report), ""]
    lines += _models(report, evidence)
    lines += _workloads(evidence, intent)
    lines += _recommendations(report)
    lines += _errors(evidence)
    lines += _forecast(evidence)
    lines += _gaps(report, request)
    return "\n".join(lines).rstrip() + "\n"


def _headline(report: Report) -> str:
    period = ""
    if report.period.start and report.period.end:
        period = f" from {report.period.start.date().isoformat()} to {report.period.end.date().isoformat()}"
    return f"**{report.requests:,} requests** cost **{usd(report.total_cost_usd)}**{period}."


def _models(report: Report, evidence: list[ToolEvidence]) -> list[str]:
    if not report.by_model:
        return []
    costs = find(evidence, "cost_breakdown", CostBreakdownResult, group_by="model")
    shares = {(r.key, r.provider or ""): r.share for r in costs[0].rows} if costs else {}
    lines = [
        "### By model",
        "",
        "| Model | Provider | Requests | Cost | Share | p50 latency | p95 latency |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in report.by_model:
        share = shares.get((m.model, m.provider))
        lines.append(
            f"| {m.model} | {m.provider} | {m.requests:,} | {usd(m.cost_usd)} | "
            f"{pct(share) if share is not None else 'n/a'} | {ms(m.p50_latency_ms)} | {ms(m.p95_latency_ms)} |"
        )
    return lines + [""]


def _workloads(evidence: list[ToolEvidence], intent: Intent) -> list[str]:
    lines: list[str] = []
    costs = find(evidence, "cost_breakdown", CostBreakdownResult, group_by="workload")
    if costs and costs[0].rows:
        lines += ["### By workload", ""]
        lines += [
            f"- **{r.key}**: {usd(r.cost_usd)} ({pct(r.share)}), {r.requests:,} requests"
            for r in costs[0].rows[:8]
        ]
        lines.append("")
    latency = find(evidence, "latency_profile", LatencyResult, group_by="workload")
    if latency and intent == "latency":
        lines += ["### Latency by workload", ""]
        lines += [
            f"- **{r.key}**: p50 {ms(r.p50_ms)}, p95 {ms(r.p95_ms)}, p99 {ms(r.p99_ms)}"
            for r in latency[0].rows
            if r.measured
        ]
        lines.append("")
    return lines


def _recommendations(report: Report) -> list[str]:
    if not report.recommendations:
        return ["### Recommendations", "", "No saving worth acting on was found in this data.", ""]
    lines = ["### Recommendations", ""]
    for rec in report.recommendations:
        lines.append(
            f"- **{rec.title}**: saves about **{usd(rec.est_monthly_savings_usd)} a month** "
            f"({rec.confidence} confidence). {rec.rationale}"
        )
    lines += [
        "",
        "Savings are estimated from this period, scaled to a month; where two touch the same "
        "workload they overlap rather than add up.",
        "",
    ]
    return lines


def _errors(evidence: list[ToolEvidence]) -> list[str]:
    errors = find(evidence, "error_waste", ErrorWasteResult)
    if errors is None or not errors[0].failed:
        return []
    e = errors[0]
    return [
        "### Failed calls",
        "",
        f"{e.failed:,} of {e.requests:,} calls failed ({pct(e.error_rate)}), wasting about "
        f"{usd(e.total_monthly_saving_usd)} a month.",
        "",
    ]


def _forecast(evidence: list[ToolEvidence]) -> list[str]:
    growth = find(evidence, "growth_projection", GrowthResult)
    if growth is None or not growth[0].days_observed:
        return []
    g = growth[0]
    if g.growth_source == "given":
        basis = f"at the growth you gave ({g.growth_pct_used:+.1f}% a month)"
    elif g.growth_source == "observed":
        basis = f"at the observed trend ({g.growth_pct_used:+.1f}% a month)"
    else:
        basis = "with no trend to go by"
    return [
        "### Forecast",
        "",
        f"You spend about {usd(g.current_monthly_cost_usd)} a month now; {basis}, next month costs about "
        f"**{usd(g.projected_next_month_cost_usd)}** ({g.confidence} confidence).",
        "",
    ]


def _gaps(report: Report, request: DataRequest | None) -> list[str]:
    if not report.data_gaps:
        return []
    lines = ["### Data gaps", ""] + [f"- {gap}" for gap in report.data_gaps]
    if request is not None:
        lines += ["", f"To close them, upload {', '.join(request.fields)} ({request.upload})."]
    return lines + [""]
