"""The language-model brain: the same four agents, the same tools and the same report
schema as the offline planner, with a model deciding what rules decide offline.

- triage: the model classifies the question (a forced ``classify_question`` tool call);
  the data check (``usage_coverage``) and sufficiency stay deterministic;
- data_helper: the model picks the analysis tools (parallel tool calls, several rounds);
  a malformed call is rejected back to it with the reason, and the intent's tool plan is
  the floor, so the report never lacks a figure it needs;
- reporting: the report object is computed from the tool results as offline; the model
  writes the text, streamed as ``message.delta`` events, checked by the figure validator.

Every step falls back to the offline planner when the model is unavailable (retries
spent, breaker open, or the step's model budget used up), and says so visibly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from typing import Any, Literal

import orjson
from pydantic import Field, ValidationError

from apex_agents.analyst.bind import say
from apex_agents.analyst.plan import tool_plan
from apex_agents.context import DeltaStream, StepContext
from apex_agents.llm import prompts
from apex_agents.llm.client import ChatClient, Completion, ToolRequest
from apex_agents.offline.data_helper import request_for, summary
from apex_agents.offline.reporting import Draft, Reporting
from apex_agents.offline.rules import extract_growth, mentioned_models
from apex_agents.offline.triage import LABELS, check_data
from apex_contracts import ApexError, ErrorCode
from apex_contracts.envelope import Model
from apex_contracts.figures import Figure
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.report import DataHelperOutput, Intent, Period, TriageOutput
from apex_contracts.tools import TOOL_SPECS, tool_schemas

LLM_FAILURES = frozenset({ErrorCode.LLM_UNAVAILABLE, ErrorCode.LLM_TIMEOUT, ErrorCode.LLM_BAD_RESPONSE})
FALLBACK_NOTE = "The language model was unavailable, so the offline planner wrote this answer."
MAX_TOOL_ROUNDS = 3
MAX_CORRECTIONS = 2
LLM_SHARE_OF_STEP = 0.6  # the rest of the step's deadline is kept for the offline fallback


class Classification(Model):
    intent: Literal[
        "cost", "latency", "model_choice", "caching", "usage_overview", "forecast", "general", "out_of_scope"
    ]
    start: date | None = None
    end: date | None = None
    models: list[str] = Field(default=[], max_length=20)
    growth_pct: float | None = Field(default=None, ge=-100, le=1000)


async def ask(
    ctx: StepContext, client: ChatClient, messages: list[dict[str, Any]], **options: Any
) -> Completion:
    """One completion within the run's token budget, its tokens and list-price cost
    accounted to the step; a budget used up is the model being unavailable to this run."""
    budget = ctx.command.data.budget_llm_tokens
    if budget is not None and ctx.tokens >= budget:
        raise ApexError("The run's language-model token budget is used up.", code=ErrorCode.LLM_UNAVAILABLE)
    completion = await client.complete(messages, **options)
    cost = PriceCatalogue.default().cost_usd(
        "", client.config.model, completion.prompt_tokens, completion.completion_tokens
    )
    ctx.account(completion.prompt_tokens, completion.completion_tokens, cost)
    return completion


class WithFallback:
    """Runs the model's version of an agent within its share of the step's deadline; when
    the model fails, runs the offline agent instead and says so."""

    def __init__(self, name: str, llm: Callable[[StepContext], Awaitable[Any]], offline: Any) -> None:
        self.name = name
        self._llm = llm
        self._offline = offline

    async def run(self, ctx: StepContext) -> Any:
        budget = ctx.command.data.deadline_ms / 1000 * LLM_SHARE_OF_STEP
        try:
            async with asyncio.timeout(budget):
                return await self._llm(ctx)
        except TimeoutError:
            reason = f"it used up its {budget:.0f} s share of the step"
        except ApexError as exc:
            if exc.code not in LLM_FAILURES:
                raise
            reason = exc.message
        await ctx.think(f"The language model is unavailable ({reason}); the offline planner takes this step.")
        output, summary_text = await self._offline.run(ctx)
        return output, f"{summary_text} (offline fallback)"


class LlmTriage:
    def __init__(self, client: ChatClient) -> None:
        self.client = client

    async def __call__(self, ctx: StepContext) -> tuple[TriageOutput, str]:
        today = ctx.now.date().isoformat()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompts.TRIAGE.format(today=today)},
            *prompts.history_messages(ctx.history),
            {"role": "user", "content": ctx.question},
        ]
        tool = prompts.classify_tool()
        choice = {"type": "function", "function": {"name": "classify_question"}}
        for _ in range(MAX_CORRECTIONS + 1):
            completion = await ask(ctx, self.client, messages, tools=[tool], tool_choice=choice)
            call = completion.tool_calls[0] if completion.tool_calls else None
            parsed, error = _classification(call)
            if parsed is not None:
                return await self._decide(ctx, parsed)
            await ctx.think(f"The model's classification was malformed ({error}); asking again.")
            messages += _correction(completion, call, error)
        raise ApexError(
            "The language model never classified the question properly.", code=ErrorCode.LLM_BAD_RESPONSE
        )

    async def _decide(self, ctx: StepContext, parsed: Classification) -> tuple[TriageOutput, str]:
        intent: Intent = parsed.intent
        period = Period(
            start=datetime.combine(parsed.start, time(), tzinfo=ctx.now.tzinfo) if parsed.start else None,
            end=datetime.combine(parsed.end, time(), tzinfo=ctx.now.tzinfo) if parsed.end else None,
        )
        await ctx.think(f"The question is about {LABELS[intent]}.")
        if intent == "out_of_scope":
            return TriageOutput(intent=intent, period=period, sufficiency="insufficient"), "Out of scope"
        growth = parsed.growth_pct if parsed.growth_pct is not None else extract_growth(ctx.question)
        asked = [ctx.question, *(turn.get("question", "") for turn in ctx.history)]
        models = mentioned_models(parsed.models, asked)
        if ignored := [m for m in parsed.models if m.strip().lower() not in models]:
            await ctx.think(
                f"Ignoring model names the question does not mention: {', '.join(m[:40] for m in ignored)}."
            )
        return await check_data(ctx, intent, period, models, growth)


def _classification(call: ToolRequest | None) -> tuple[Classification | None, str]:
    if call is None:
        return None, "no classify_question call"
    try:
        return Classification.model_validate_json(call.arguments or "{}"), ""
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        return None, f"{'.'.join(str(p) for p in first['loc']) or 'arguments'}: {first['msg']}"


def _correction(completion: Completion, call: ToolRequest | None, error: str) -> list[dict[str, Any]]:
    """The model's own turn and the rejection, so it can correct itself."""
    if call is None:
        return [
            {"role": "assistant", "content": completion.text or ""},
            {"role": "user", "content": f"Call classify_question ({error})."},
        ]
    return [
        assistant_turn("", [call]),
        {"role": "tool", "tool_call_id": call.id, "content": f"rejected: {error}. Call it again, correctly."},
    ]


def assistant_turn(text: str, calls: list[ToolRequest]) -> dict[str, Any]:
    """The model's own tool-call turn, sent back in the dialect every common server takes:
    ``content`` a string, empty when the model only called tools (llama.cpp refuses null,
    and vLLM, Ollama and LiteLLM's proxy take an empty string)."""
    return {
        "role": "assistant",
        "content": text or "",
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }


class LlmDataHelper:
    def __init__(self, client: ChatClient) -> None:
        self.client = client

    async def __call__(self, ctx: StepContext) -> tuple[DataHelperOutput, str]:
        triage = ctx.inputs.triage or TriageOutput(intent="general", sufficiency="insufficient")
        request = request_for(triage)
        if triage.sufficiency == "insufficient" or triage.intent == "out_of_scope":
            return DataHelperOutput(data_request=request), "Wrote a data request"
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompts.DATA_HELPER},
            {"role": "user", "content": _brief(ctx.question, triage)},
        ]
        evidence = []
        for _ in range(MAX_TOOL_ROUNDS):
            completion = await ask(ctx, self.client, messages, tools=tool_schemas())
            if not completion.tool_calls:
                break
            messages.append(assistant_turn(completion.text, completion.tool_calls))
            valid, rejected = _checked(completion.tool_calls)
            for call, error in rejected:
                await ctx.think(f"Rejected a malformed {call.name or 'tool'} call: {error}.")
                messages.append({"role": "tool", "tool_call_id": call.id, "content": f"rejected: {error}"})
            found = await ctx.call_tools([(name, args) for _, name, args in valid]) if valid else []
            evidence += found
            for (call, _, _), item in zip(valid, found, strict=True):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": _digest(item.result)})
        evidence += await _floor(ctx, triage, evidence)
        return DataHelperOutput(evidence=evidence, data_request=request), summary(evidence)


def _brief(question: str, triage: TriageOutput) -> str:
    coverage = next((e.result for e in triage.evidence if e.result), {})
    return orjson.dumps(
        {
            "question": question,
            "intent": triage.intent,
            "period": triage.period.model_dump(mode="json"),
            "models": triage.models,
            "missing_fields": triage.missing_fields,
            "coverage": {
                k: coverage.get(k) for k in ("rows", "period", "workloads", "models", "fields_missing")
            },
        }
    ).decode()


def _checked(
    calls: list[ToolRequest],
) -> tuple[list[tuple[ToolRequest, str, Model]], list[tuple[ToolRequest, str]]]:
    valid: list[tuple[ToolRequest, str, Model]] = []
    rejected: list[tuple[ToolRequest, str]] = []
    for call in calls:
        if call.name not in TOOL_SPECS:
            rejected.append((call, f"there is no tool named {call.name!r}"))
            continue
        try:
            args = TOOL_SPECS[call.name][0].model_validate_json(call.arguments or "{}")
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            rejected.append(
                (call, f"{'.'.join(str(p) for p in first['loc']) or 'arguments'}: {first['msg']}")
            )
            continue
        valid.append((call, call.name, args))
    return valid, rejected


async def _floor(ctx: StepContext, triage: TriageOutput, evidence: list[Any]) -> list[Any]:
    """Runs the plan's calls the model did not make (same tool and grouping)."""
    made = {(e.tool, (e.result or {}).get("group_by")) for e in evidence if e.status == "ok"}
    missing = [
        (name, args)
        for name, args in tool_plan(triage.intent, triage.period, triage.models, triage.growth_pct)
        if (name, getattr(args, "group_by", None)) not in made
    ]
    if not missing:
        return []
    await ctx.think(
        "Adding the analyses the report needs: " + ", ".join(dict.fromkeys(n for n, _ in missing)) + "."
    )
    return await ctx.call_tools(missing)


def _digest(result: dict[str, Any] | None, limit: int = 6000) -> str:
    """A tool result for the model: without citations, long lists cut short."""
    if result is None:
        return "error: the tool failed"
    slim = {k: (v[:15] if isinstance(v, list) else v) for k, v in result.items() if k != "queries"}
    return orjson.dumps(slim).decode()[:limit]


class LlmWriter:
    """Writes the report's text with the model, streamed as ``message.delta`` events; a
    rewrite asked for by the validator is a new streamed message."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    async def write(self, ctx: StepContext, draft: Draft, feedback: list[str] | None) -> str:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompts.WRITER},
            *prompts.history_messages(ctx.history),
            {"role": "user", "content": _material(ctx.question, draft)},
        ]
        if feedback:
            messages.append({"role": "user", "content": prompts.REWRITE.format(figures=", ".join(feedback))})
        holder: list[DeltaStream] = [ctx.stream()]

        async def restart() -> None:
            await holder[0].settle()
            holder[0] = ctx.stream()

        async def text(chunk: str) -> None:
            await holder[0].write(chunk)

        completion = await ask(ctx, self.client, messages, on_text=text, on_restart=restart)
        await holder[0].flush()
        if not completion.text.strip():
            raise ApexError("The language model wrote an empty answer.", code=ErrorCode.LLM_BAD_RESPONSE)
        return completion.text


def _material(question: str, draft: Draft) -> str:
    """The question, the report (without its figures' sources), its figures one a line
    (what the model may state) and the template text."""
    report = draft.report.model_dump(mode="json", exclude={"figures"})
    for rec in report["recommendations"]:
        rec.pop("saving", None)
    return "\n\n".join(
        [
            f"QUESTION: {question}",
            "REPORT: " + orjson.dumps(report).decode(),
            "FIGURES (value | measure | about):\n" + "\n".join(_figure_line(f) for f in draft.report.figures),
            "A correct plain version you may improve on:\n" + draft.template(),
        ]
    )


def _figure_line(figure: Figure) -> str:
    qualifier = f" ({figure.qualifier})" if figure.qualifier else ""
    monthly = " a month" if figure.unit == "usd_per_month" else ""
    return f"{say(figure)}{monthly} | {figure.measure}{qualifier} | {figure.entity.label()}"


class FallbackWriter:
    """The model's writer, or the template with a visible note when the model fails."""

    def __init__(self, llm: LlmWriter, offline: Any) -> None:
        self._llm = llm
        self._offline = offline

    async def write(self, ctx: StepContext, draft: Draft, feedback: list[str] | None) -> str:
        budget = ctx.command.data.deadline_ms / 1000 * (1 - LLM_SHARE_OF_STEP)
        try:
            async with asyncio.timeout(budget):
                return await self._llm.write(ctx, draft, feedback)
        except TimeoutError:
            reason = f"no text within {budget:.0f} s"
        except ApexError as exc:
            if exc.code not in LLM_FAILURES:
                raise
            reason = exc.message
        await ctx.think(f"The language model is unavailable ({reason}); the offline planner writes the text.")
        draft.note = FALLBACK_NOTE
        return draft.template()


def llm_agents(client: ChatClient, offline: dict[str, Any]) -> dict[str, Any]:
    """The four agents of the language-model brain, each falling back to ``offline``."""
    return {
        "supervisor": offline["supervisor"],
        "triage": WithFallback("triage", LlmTriage(client), offline["triage"]),
        "data_helper": WithFallback("data_helper", LlmDataHelper(client), offline["data_helper"]),
        "reporting": Reporting(writer=FallbackWriter(LlmWriter(client), offline["reporting"])),
    }
