"""The report as markdown for people, rendered from the report's figures only (``bind.py``):
every number stated is a figure, formatted the way the validator reads it back (money in
cents, shares in tenths of a percent, latency in whole ms). The offline brain's text, and
the language model's fallback."""

from __future__ import annotations

from apex_agents.analyst.bind import MAX_WORKLOADS, Binder, say
from apex_contracts.report import DataRequest, Intent, Report, ToolEvidence

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


def compose(
    intent: Intent, report: Report, evidence: list[ToolEvidence], request: DataRequest | None, note: str = ""
) -> str:
    """``evidence`` is kept for the writer's interface; the text uses ``report.figures``."""
    b = Binder(report.figures)
    lines = [f"## {'Partial report' if report.data_gaps else 'Your LLM usage'}", ""]
    if note:
        lines += [f"_{note}_", ""]
    lines += [INTRO[intent], "", _headline(report, b), ""]
    lines += _models(report, b)
    lines += _workloads(report, b, intent)
    lines += _recommendations(report)
    lines += _errors(b)
    lines += _forecast(b)
    lines += _gaps(report, request)
    lines += _prices(report)
    return "\n".join(lines).rstrip() + "\n"


def _headline(report: Report, b: Binder) -> str:
    period = ""
    if report.period.start and report.period.end:
        period = f" from {report.period.start.date().isoformat()} to {report.period.end.date().isoformat()}"
    requests, cost = b.get("requests"), b.get("cost")
    if requests is None or cost is None:
        return "No cost figures were found for this period."
    return f"**{say(requests)} requests** cost **{say(cost)}**{period}."


def _models(report: Report, b: Binder) -> list[str]:
    if not report.by_model:
        return []
    lines = [
        "### By model",
        "",
        "| Model | Provider | Requests | Cost | Share | p50 latency | p95 latency |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in report.by_model:
        at = {"model": m.model, "provider": m.provider or None}
        lines.append(
            f"| {m.model} | {m.provider} | {b.say('requests', **at)} | {b.say('cost', **at)} | "
            f"{b.say('share', **at)} | {b.say('latency', 'p50', **at)} | {b.say('latency', 'p95', **at)} |"
        )
    return lines + [""]


def _workloads(report: Report, b: Binder, intent: Intent) -> list[str]:
    lines: list[str] = []
    names = [f.entity.workload for f in b.figures if f.measure == "cost" and f.entity.kind == "workload"]
    if names:
        lines += ["### By workload", ""]
        lines += [
            f"- **{w}**: {b.say('cost', workload=w)} ({b.say('share', workload=w)} of spend), "
            f"{b.say('requests', workload=w)} requests"
            for w in names[:MAX_WORKLOADS]
        ]
        lines.append("")
    measured = [
        f.entity.workload
        for f in b.figures
        if f.measure == "latency" and f.qualifier == "p50" and f.entity.kind == "workload"
    ]
    if measured and intent == "latency":
        lines += ["### Latency by workload", ""]
        lines += [
            f"- **{w}**: p50 {b.say('latency', 'p50', workload=w)}, p95 {b.say('latency', 'p95', workload=w)}, "
            f"p99 {b.say('latency', 'p99', workload=w)}"
            for w in measured
        ]
        lines.append("")
    return lines


def _recommendations(report: Report) -> list[str]:
    if not report.recommendations:
        return ["### Recommendations", "", "No saving worth acting on was found in this data.", ""]
    lines = ["### Recommendations", ""]
    for rec in report.recommendations:
        lines.append(
            f"- **{rec.title}**: saves about **{say(rec.saving)} a month** "
            f"({rec.confidence} confidence). {rec.rationale}"
        )
    lines += [
        "",
        "Savings are estimated from this period, scaled to a month; where two touch the same "
        "workload they overlap rather than add up.",
        "",
    ]
    return lines


def _errors(b: Binder) -> list[str]:
    failed = b.get("failed_calls")
    if failed is None or not failed.value:
        return []
    return [
        "### Failed calls",
        "",
        f"{say(failed)} failed calls out of {b.say('requests', 'all')} requests ({b.say('error_rate')} failed), "
        f"wasting about {b.say('cost', 'wasted')} a month.",
        "",
    ]


def _forecast(b: Binder) -> list[str]:
    now = b.get("cost", "now")
    if now is None:
        return []
    growth = b.get("growth")
    basis = (
        f"at a growth of {say(growth)} a month"
        if growth is not None and growth.value
        else "with no trend to go by"
    )
    return [
        "### Forecast",
        "",
        f"You spend about {say(now)} a month now; {basis}, next month costs about "
        f"**{b.say('cost', 'next month')}**.",
        "",
    ]


def _gaps(report: Report, request: DataRequest | None) -> list[str]:
    if not report.data_gaps:
        return []
    lines = ["### Data gaps", ""] + [f"- {gap}" for gap in report.data_gaps]
    if request is not None:
        lines += ["", f"To close them, upload {', '.join(request.fields)} ({request.upload})."]
    return lines + [""]


def _prices(report: Report) -> list[str]:
    if not report.price_sources:
        return []
    return [f"_Prices: {', '.join(report.price_sources)}._", ""]
