"""The reporting agent: always runs last and always answers. A full report, a partial
one naming its gaps, or a guidance report (``needs_data``) saying exactly what data to
upload. The ``report`` object is computed from tool results; the text comes from a
``ReportWriter`` (the template here, rendered from the report's figures, or a language
model) and is checked against the report's figures by the validator: a text stating a
number with no figure of that value, measure and entity is rejected and rewritten once,
and if the rewrite fails too, the template text (valid by construction) is used."""

from __future__ import annotations

from typing import Protocol

from apex_agents.analyst.compose import compose
from apex_agents.analyst.figures import unsupported
from apex_agents.analyst.plan import tool_plan
from apex_agents.analyst.recommend import build_report
from apex_agents.context import StepContext
from apex_contracts.report import (
    AssistantResponse,
    DataHelperOutput,
    DataRequest,
    Intent,
    Report,
    ReportingOutput,
    ToolEvidence,
    TriageOutput,
)

OUT_OF_SCOPE_TEXT = (
    "I can only help with your LLM workload: where the money and the latency go, which "
    "models to use, caching, batching and forecasts. Ask me about those."
)


class ReportWriter(Protocol):
    async def write(self, ctx: StepContext, draft: Draft, feedback: list[str] | None) -> str:
        """The report's text; ``feedback`` lists the numbers a previous text stated that no
        figure supports, each with the reason (None on the first attempt)."""
        ...


class Draft:
    """Everything a writer may say: the report and the tool results behind it."""

    def __init__(
        self,
        intent: Intent,
        report: Report,
        evidence: list[ToolEvidence],
        request: DataRequest | None,
        note: str = "",
    ) -> None:
        self.intent = intent
        self.report = report
        self.evidence = evidence
        self.request = request
        self.note = note

    def template(self) -> str:
        return compose(self.intent, self.report, self.evidence, self.request, self.note)


class TemplateWriter:
    async def write(self, ctx: StepContext, draft: Draft, feedback: list[str] | None) -> str:
        return draft.template()


class Reporting:
    name = "reporting"

    def __init__(self, writer: ReportWriter | None = None, note: str = "") -> None:
        self.writer: ReportWriter = writer or TemplateWriter()
        self.note = note

    async def run(self, ctx: StepContext) -> tuple[ReportingOutput, str]:
        triage = ctx.inputs.triage or TriageOutput(intent="general", sufficiency="insufficient")
        helper = ctx.inputs.data_helper or DataHelperOutput()
        failures = ctx.inputs.failures
        if triage.intent == "out_of_scope":
            report = Report(period=triage.period, total_cost_usd=0, requests=0)
            response = AssistantResponse(text=OUT_OF_SCOPE_TEXT, report=report, kind="out_of_scope")
            return ReportingOutput(status="completed", response=response), "Out of scope answer"
        if triage.sufficiency == "insufficient":
            await ctx.think("No usable data: writing a guidance report with the data request.")
            return guidance(triage, helper.data_request), "Guidance report (needs data)"
        gathered = helper.evidence
        if not gathered:
            # The data helper failed: the report still gets its core figures.
            await ctx.think("The data helper gathered nothing; running the core analyses myself.")
            gathered = await ctx.call_tools(tool_plan(triage.intent, triage.period, triage.models)[:2])
        await ctx.think("Composing the report from the tool results.")
        evidence = triage.evidence + gathered
        report = build_report(triage, gathered, failures)
        draft = Draft(triage.intent, report, evidence, helper.data_request, self.note)
        text = await self.checked_text(ctx, draft)
        kind = "partial" if report.data_gaps else "full"
        response = AssistantResponse(text=text, report=report, kind=kind, data_request=helper.data_request)
        return ReportingOutput(status="completed", response=response), f"{kind.capitalize()} report"

    async def checked_text(self, ctx: StepContext, draft: Draft) -> str:
        text = await self.writer.write(ctx, draft, None)
        wrong = unsupported(text, draft.report.figures)
        if not wrong:
            return text
        await ctx.think(
            f"The text states figures the report does not support ({'; '.join(wrong[:5])}); rewriting it."
        )
        text = await self.writer.write(ctx, draft, wrong)
        wrong = unsupported(text, draft.report.figures)
        if not wrong:
            return text
        await ctx.think("The rewrite still states unsupported figures; answering with the plain report.")
        return draft.template()


def guidance(triage: TriageOutput, request: DataRequest | None) -> ReportingOutput:
    report = Report(
        period=triage.period,
        total_cost_usd=0,
        requests=0,
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
