"""The offline planner over the real tools and persistence: a full report whose figures
are the data set's (computed here independently), recommendations citing the run's own
tool calls, a text that states the report's figures and no others, a partial report for
data without latency, a guidance report for an empty tenant, and follow-ups."""

from __future__ import annotations

from typing import Any

from apex_agents.analyst.figures import stated, unsupported
from tests.integration.agents.bound import assert_bound, figures_of
from tests.integration.agents.conftest import Run, StackFactory
from tests.integration.tools import analyst_dataset as ds

AGENTS = ["supervisor", "triage", "data_helper", "reporting"]


def results(run: Run) -> list[dict[str, Any]]:
    return [e["data"]["result"] for e in run.of("tool_completed") if e["data"]["result"]]


def money(value: float) -> str:
    return f"${value:,.2f}"


async def test_a_cost_question_gets_a_full_report_of_the_data(make_stack: StackFactory) -> None:
    stack = await make_stack()
    rows = ds.rows()
    await stack.upload(rows)
    run = await stack.ask("Where is my LLM spend going and how do I cut it?")

    assert [e["data"]["agent"] for e in run.of("agent_completed")] == AGENTS
    response = run.response
    report = response["report"]
    assert response["kind"] == "partial", "acme-ft-1 has no list price: a named gap"
    assert report["data_gaps"] == [
        "no price for acme-ft-1 in the price table or your overrides: their calls count what you uploaded, "
        "else nothing (set a price override)"
    ]
    assert report["requests"] == len(rows)
    assert report["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
    for model in report["by_model"]:
        mine = [r for r in rows if r["model"] == model["model"]]
        assert model["requests"] == len(mine)
        assert model["cost_usd"] == ds.cents(sum(ds.cost(r) for r in mine))
        latencies = [r["latency_ms"] for r in mine]
        assert (model["p50_latency_ms"], model["p95_latency_ms"]) == (
            round(ds.pct(latencies, 50)),
            round(ds.pct(latencies, 95)),
        )

    calls = run.call_ids()
    kinds = {r["kind"] for r in report["recommendations"]}
    assert {"model_substitution", "batch_api", "error_reduction", "prompt_trimming"} <= kinds
    savings = [r["est_monthly_savings_usd"] for r in report["recommendations"]]
    assert savings == sorted(savings, reverse=True) and all(s > 0 for s in savings)
    for rec in report["recommendations"]:
        assert rec["evidence"] and set(rec["evidence"]) <= calls, "cites tool calls of this run"
    opus = next(r for r in report["recommendations"] if r["title"].startswith("Move code-review"))
    review = [r for r in rows if r["workload"] == "code-review"]
    spend = sum(ds.cost(r) for r in review)
    tokens = [sum(r[f] for r in review) for f in ("prompt_tokens", "cached_tokens", "completion_tokens")]
    now = ds.list_cost(ds.price_of("anthropic", "claude-opus-4-1"), *tokens)
    then = ds.list_cost(ds.price_of("anthropic", "claude-opus-4-5"), *tokens)
    assert opus["est_monthly_savings_usd"] == ds.cents(
        ds.monthly(spend * (now - then) / now, ds.span_days(rows))
    )

    text = response["text"]
    assert unsupported(text, figures_of(report)) == [], text
    assert_bound(report, run.of("tool_completed"))
    assert report["price_sources"] == ["genai-prices 0.2.3", "uploaded"] and "genai-prices 0.2.3" in text
    assert money(report["total_cost_usd"]) in text and f"{report['requests']:,}" in text
    for rec in report["recommendations"]:
        assert money(rec["est_monthly_savings_usd"]) in text and rec["title"] in text
    assert len(run.of("tool_executing")) == len(run.of("tool_completed")) >= 8


async def test_tool_calls_of_the_data_helper_run_in_parallel(make_stack: StackFactory) -> None:
    stack = await make_stack()
    await stack.upload(ds.rows(days=7))
    run = await stack.ask("How can I cut my LLM costs?")
    kinds = [
        e["type"]
        for e in run.events
        if e["type"] in ("tool_executing", "tool_completed") and e.get("agent") == "data_helper"
    ]
    first_done = kinds.index("tool_completed")
    assert first_done >= 2, f"several calls were in flight at once: {kinds}"


async def test_data_without_latency_gets_a_partial_report_naming_the_gap(make_stack: StackFactory) -> None:
    stack = await make_stack()
    rows = [r for r in ds.rows(latency=False) if r["provider"] != "acme"]
    await stack.upload(rows)
    run = await stack.ask("Where does my money go?")
    response = run.response
    assert run.output("triage")["sufficiency"] == "partial"
    assert response["kind"] == "partial"
    assert any("latency_ms" in gap for gap in response["report"]["data_gaps"])
    assert "latency_ms" in response["data_request"]["fields"]
    assert all(m.get("p50_latency_ms") is None for m in response["report"]["by_model"])
    assert "latency_ms" in response["text"] and "Data gaps" in response["text"]
    assert response["report"]["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
    assert unsupported(response["text"], figures_of(response["report"])) == []


async def test_an_empty_tenant_gets_a_guidance_report(make_stack: StackFactory) -> None:
    stack = await make_stack()
    run = await stack.ask("Where is my LLM spend going?")
    output = run.output("reporting")
    assert output["status"] == "needs_data"
    response = output["response"]
    assert response["kind"] == "guidance"
    request = response["data_request"]
    assert set(request["fields"]) >= {"ts", "provider", "model", "prompt_tokens", "completion_tokens"}
    assert {h["provider"] for h in request["how_to_export"]} >= {
        "OpenAI",
        "Anthropic",
        "Azure OpenAI",
        "AWS Bedrock",
        "Google Vertex AI",
    }
    assert any(f.startswith("CSV") for f in request["formats"])
    assert "POST /api/v1/usage" in response["text"]


async def test_a_forecast_at_a_given_growth(make_stack: StackFactory) -> None:
    stack = await make_stack()
    rows = ds.rows()
    await stack.upload(rows)
    run = await stack.ask("What will next month cost at 20% growth?")
    assert run.output("triage")["intent"] == "forecast"
    growth = next(r for r in results(run) if "projected_next_month_cost_usd" in r)
    daily: dict[str, float] = {}
    for row in rows:
        daily[row["ts"][:10]] = daily.get(row["ts"][:10], 0.0) + ds.cost(row)
    mean = sum(ds.cents(v) for v in daily.values()) / len(daily)
    assert growth["projected_next_month_cost_usd"] == ds.cents(mean * 30 * 1.2)
    assert money(growth["projected_next_month_cost_usd"]) in run.response["text"]
    assert "+20.0%" in run.response["text"]


async def test_a_follow_up_keeps_the_thread_topic(make_stack: StackFactory) -> None:
    stack = await make_stack()
    await stack.upload(ds.rows(days=7))
    first = await stack.ask("Which models are slow? p95 please")
    assert first.output("triage")["intent"] == "latency"
    follow = await stack.ask(
        "And for gpt-4o only?",
        thread_id=first.events[0]["thread_id"],
        history=[{"question": "Which models are slow? p95 please", "answer": first.response["text"]}],
    )
    triage = follow.output("triage")
    assert triage["intent"] == "latency" and triage["models"] == ["gpt-4o"]
    assert [m["model"] for m in follow.response["report"]["by_model"]] == ["gpt-4o"]
    assert "follows up" in follow.thoughts("supervisor")[0]


async def test_an_out_of_scope_question_is_answered_without_tools(make_stack: StackFactory) -> None:
    stack = await make_stack()
    run = await stack.ask("Tell me a joke about the weather")
    assert run.response["kind"] == "out_of_scope"
    assert not run.of("tool_executing")
    assert stated(run.response["text"]) == []
