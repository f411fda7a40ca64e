"""The language-model brain against a scripted OpenAI-compatible server on loopback, over
the real tools and persistence: tool calling (a malformed call rejected and retried),
streamed text as coalesced ``message.delta`` events, the figure validator making the
model rewrite, a 429 retried, and a timeout plus 429s that open the breaker, after which
the offline planner answers with a visible note."""

from __future__ import annotations

import re
from typing import Any

import orjson

from apex_agents.analyst.figures import unsupported
from apex_agents.llm.agents import FALLBACK_NOTE
from tests.integration.agents.bound import assert_bound, figures_of
from tests.integration.agents.conftest import Run, StackFactory
from tests.integration.agents.scripted_llm import (
    Reply,
    ScriptedLLM,
    Stall,
    Status,
    Stream,
    role,
    tool_messages,
)
from tests.integration.tools import analyst_dataset as ds

INVENTED = "$123,456.78"


def report_in(request: dict[str, Any]) -> dict[str, Any]:
    prompt = request["messages"][-1]["content"] if request["messages"][-1]["role"] == "user" else ""
    for message in request["messages"]:
        if message["role"] == "user" and message["content"].startswith("QUESTION:"):
            prompt = message["content"]
    match = re.search(r"^REPORT: (\{.*\})$", prompt, re.MULTILINE)
    assert match, "the writer is given the report"
    return orjson.loads(match[1])  # type: ignore[no-any-return]


def written(report: dict[str, Any]) -> list[str]:
    """A valid answer in small pieces, as a model streams it."""
    text = f"## Your LLM spend\n\n{report['requests']:,} requests cost ${report['total_cost_usd']:,.2f}.\n\n"
    for rec in report["recommendations"]:
        text += f"- {rec['title']}: about ${rec['est_monthly_savings_usd']:,.2f} a month.\n"
    return [text[i : i + 4] for i in range(0, len(text), 4)]


class Conversation:
    """The script of a good run: a 429 first, a malformed classification, one naming models
    the question does not, tool calls with two malformed ones, a text with an invented
    figure, then a correct rewrite."""

    def __init__(self) -> None:
        self.triage = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        who = role(request)
        if who == "triage":
            self.triage += 1
            if self.triage == 1:
                return Status(429, retry_after_s=0.05)
            if self.triage == 2:
                return Stream(
                    tool_calls=[("c1", "classify_question", '{"intent": "cost", "models": "gpt-4o"}')]
                )
            return Stream(
                tool_calls=[
                    (
                        "c2",
                        "classify_question",
                        '{"intent": "cost", "start": null, "models": ["models", "gpt-4o"]}',
                    )
                ]
            )
        if who == "data_helper":
            if tool_messages(request):
                return Stream(text=["done"])
            return Stream(
                tool_calls=[
                    ("d1", "cost_breakdown", '{"group_by": "model"}'),
                    ("d2", "model_substitution", "{}"),
                    ("d3", "drop_tables", "{}"),
                    ("d4", "cost_breakdown", '{"group_by": "planet"}'),
                ]
            )
        if any("do not match the report's figures" in (m.get("content") or "") for m in request["messages"]):
            return Stream(text=written(report_in(request)), completion_tokens=300)
        return Stream(text=["Your spend is ", INVENTED, " a month."])


def deltas(run: Run) -> dict[str, list[dict[str, Any]]]:
    by_message: dict[str, list[dict[str, Any]]] = {}
    for event in run.of("message.delta"):
        by_message.setdefault(event["data"]["message_id"], []).append(event)
    return by_message


async def test_the_model_classifies_calls_tools_and_streams_a_checked_text(make_stack: StackFactory) -> None:
    script = Conversation()
    async with ScriptedLLM(script) as llm:
        stack = await make_stack(
            llm_base_url=llm.base_url, llm_model="gpt-4.1-mini", llm_api_key="sk-test", llm_backoff_s=0.01
        )
        rows = ds.rows(days=7)
        await stack.upload(rows)
        run = await stack.ask("Where is my LLM spend going and how do I cut it?")

    summaries = {e["data"]["agent"]: e["data"]["summary"] for e in run.of("agent_completed")}
    assert set(summaries) == {"supervisor", "triage", "data_helper", "reporting"}
    assert not any("offline fallback" in s for s in summaries.values())
    assert script.triage == 3, "a 429 retried, a malformed classification rejected and asked again"
    assert any("malformed" in t for t in run.thoughts("triage"))
    assert run.output("triage")["intent"] == "cost"
    assert run.output("triage")["models"] == [], "names the question does not mention filter nothing"
    assert "Ignoring model names the question does not mention: models, gpt-4o." in run.thoughts("triage")

    helper = run.thoughts("data_helper")
    assert any("Rejected a malformed drop_tables call" in t for t in helper)
    assert any("Rejected a malformed cost_breakdown call: group_by" in t for t in helper)
    tools = [e["tool"] for e in run.output("data_helper")["evidence"]]
    assert tools[:2] == ["cost_breakdown", "model_substitution"], "the model's own calls come first"
    assert {"caching_opportunity", "batch_opportunity", "error_waste"} <= set(tools), "the plan is the floor"
    feedback = [m for r in llm.requests if role(r) == "data_helper" for m in tool_messages(r)]
    assert sum(m["content"].startswith("rejected:") for m in feedback) == 2
    assert all(
        r["model"] == "gpt-4.1-mini" and r["_auth"] == "Bearer sk-test" and r["stream"] for r in llm.requests
    )
    echoed = [
        m for r in llm.requests for m in r["messages"] if m["role"] == "assistant" and m.get("tool_calls")
    ]
    assert echoed and all(m["content"] == "" for m in echoed), (
        "a tool-call turn goes back with an empty string content, never null (llama.cpp refuses null)"
    )

    response = run.response
    assert any(INVENTED in t for t in run.thoughts("reporting")), "the invented figure was caught"
    assert INVENTED not in response["text"]
    assert response["text"] == "".join(written(response["report"]))
    assert unsupported(response["text"], figures_of(response["report"])) == []
    assert_bound(response["report"], run.of("tool_completed"))
    assert response["report"]["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
    assert all(set(r["evidence"]) <= run.call_ids() for r in response["report"]["recommendations"])

    messages = deltas(run)
    assert len(messages) == 2, "the rejected text and its rewrite, each its own streamed message"
    first, final = messages.values()
    assert "".join(d["data"]["text"] for d in first) == f"Your spend is {INVENTED} a month."
    assert "".join(d["data"]["text"] for d in final) == response["text"]
    assert [d["data"]["index"] for d in final] == list(range(len(final)))
    assert len(final) < len(written(response["report"])), "chunks are coalesced"
    assert all(d["id"] == f"{run.run_id}:3:a1:delta:1:{d['data']['index']}" for d in final)


async def test_a_timeout_and_429s_open_the_breaker_and_the_offline_planner_answers(
    make_stack: StackFactory,
) -> None:
    def script(request: dict[str, Any]) -> Reply:
        return Stall(5.0) if len(llm.requests) == 1 else Status(429, retry_after_s=0.01)

    async with ScriptedLLM(script) as llm:
        stack = await make_stack(
            llm_base_url=llm.base_url,
            llm_model="gpt-4.1-mini",
            llm_timeout_s=0.5,
            llm_max_attempts=3,
            llm_backoff_s=0.01,
            llm_breaker_threshold=3,
        )
        rows = ds.rows(days=7)
        await stack.upload(rows)
        run = await stack.ask("Where is my LLM spend going and how do I cut it?")

    assert len(llm.requests) == 3, "a timeout and two 429s, then the open breaker refuses without calling"
    summaries = {e["data"]["agent"]: e["data"]["summary"] for e in run.of("agent_completed")}
    assert summaries["triage"].endswith("(offline fallback)")
    assert summaries["data_helper"].endswith("(offline fallback)")
    assert any("language model is unavailable" in t for t in run.thoughts("triage"))
    assert any("circuit open" in t or "failed repeatedly" in t for t in run.thoughts("data_helper"))
    response = run.response
    assert FALLBACK_NOTE in response["text"], "the fallback is visible in the answer"
    assert response["report"]["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
    assert not run.of("message.delta")


async def test_agent_completed_carries_the_tokens_the_model_reported(make_stack: StackFactory) -> None:
    async with ScriptedLLM(Conversation()) as llm:
        stack = await make_stack(llm_base_url=llm.base_url, llm_model="gpt-4.1-mini", llm_backoff_s=0.01)
        await stack.upload(ds.rows(days=3))
        run = await stack.ask("Where is my LLM spend going?")
    completed = {e["data"]["agent"]: e["data"] for e in run.of("agent_completed")}
    assert completed["triage"]["tokens"] == 2 * 120, "two answered classifications of 100 + 20 tokens"
    assert completed["triage"]["brain"] == "llm"


async def test_a_server_that_refuses_the_request_as_invalid_is_not_retried(make_stack: StackFactory) -> None:
    """llama.cpp's server answers a request it cannot validate with HTTP 500: retrying the
    same request cannot help, so the step falls back at once, visibly, and the breaker stays
    closed for the next steps."""

    def script(request: dict[str, Any]) -> Reply:
        if role(request) == "triage":
            return Status(
                500, message="1 validation error: messages.2.content: Input should be a valid string"
            )
        return Stream(text=["done"])

    async with ScriptedLLM(script) as llm:
        stack = await make_stack(llm_base_url=llm.base_url, llm_model="gpt-4.1-mini", llm_backoff_s=0.01)
        await stack.upload(ds.rows(days=3))
        run = await stack.ask("Where is my LLM spend going?")
    triage_requests = [r for r in llm.requests if role(r) == "triage"]
    assert len(triage_requests) == 1, "an invalid request is not sent again"
    assert run.output("reporting")
    assert any("refused the request" in t for t in run.thoughts("triage"))
    assert any(role(r) == "data_helper" for r in llm.requests), "the breaker stayed closed"
