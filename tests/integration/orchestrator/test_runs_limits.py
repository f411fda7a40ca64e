"""Every limit of a run ends it with ``run.failed`` and the limit's code, once, and stops
the work still running for it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from apex_contracts import (
    AgentCompleted,
    AgentCompletedData,
    AgentStarted,
    AgentStartedData,
    AgentStep,
    Scope,
    parse_command,
    subjects,
)
from apex_contracts.report import SupervisorOutput
from apex_contracts.streams import AGENT_STEP_CONSUMER, APEX_CMD
from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    wait_terminal,
)


async def _start_all(machinery: Machinery, **orchestrator: Any) -> None:
    await machinery.start("tools")
    await machinery.start("agents")
    await machinery.start("orchestrator", **orchestrator)


async def test_the_run_wall_clock_limit(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    await _start_all(machinery, run_timeout_s=2.0, step_timeout_s=60.0)
    usage.hold()  # the triage tool never answers
    sent = await gateway.send(User())
    end = await wait_terminal(bus, sent, timeout=20)
    assert end["type"] == "run.failed" and end["data"]["error"]["code"] == "run_timeout"
    assert end["data"]["duration_ms"] >= 2000
    usage.release()
    await asyncio.sleep(0.5)
    assert_clean(await run_events(bus, sent))


async def test_the_step_limit(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    await _start_all(machinery, run_timeout_s=60.0, step_timeout_s=2.0)
    usage.hold()
    sent = await gateway.send(User())
    end = await wait_terminal(bus, sent, timeout=20)
    assert end["type"] == "run.failed" and end["data"]["error"]["code"] == "step_timeout"
    assert "triage" in end["data"]["error"]["message"]
    usage.release()
    await asyncio.sleep(0.5)
    assert_clean(await run_events(bus, sent))


async def test_the_tool_call_limit(machinery: Machinery, bus: Bus, gateway: GatewayStandIn) -> None:
    await UsageStandIn(bus, with_data=True).start()  # data: the data helper wants many analyses
    await _start_all(machinery, max_tool_calls=3)
    sent = await gateway.send(User())
    end = await wait_terminal(bus, sent)
    events = await run_events(bus, sent)
    assert end["type"] == "run.failed" and end["data"]["error"]["code"] == "budget_exceeded"
    assert len([e for e in events if e["type"] == "tool_completed"]) <= 3
    assert "reporting" not in {e["data"].get("agent") for e in events if e["type"] == "agent_started"}
    assert_clean(events)


async def test_the_token_limit(machinery: Machinery, bus: Bus, gateway: GatewayStandIn) -> None:
    """An agent worker that reports the tokens its model used (as an LLM-backed agent
    does): the run stops once the total passes the limit, and each step is told what is
    left of the budget."""
    await machinery.start("orchestrator", max_llm_tokens=500)
    budgets: list[int | None] = []
    worker = asyncio.create_task(_token_spending_agent(bus, tokens=600, budgets=budgets))
    try:
        sent = await gateway.send(User())
        end = await wait_terminal(bus, sent)
    finally:
        worker.cancel()
    assert end["type"] == "run.failed" and end["data"]["error"]["code"] == "budget_exceeded"
    assert "500" in end["data"]["error"]["message"]
    assert budgets == [500]
    events = await run_events(bus, sent)
    assert [e["data"]["agent"] for e in events if e["type"] == "agent_started"] == ["supervisor"]
    assert_clean(events)


async def _token_spending_agent(bus: Bus, *, tokens: int, budgets: list[int | None]) -> None:
    """Plays the agents service: takes agent.step commands and completes each step,
    reporting ``tokens`` used."""
    sub = await bus.js.pull_subscribe(
        subjects.CMD_AGENT_STEP, durable=AGENT_STEP_CONSUMER.durable, stream=APEX_CMD.name
    )
    while True:
        try:
            messages = await sub.fetch(1, timeout=1.0)
        except TimeoutError:
            continue
        for msg in messages:
            step = parse_command(orjson.loads(msg.data))
            assert isinstance(step, AgentStep)
            budgets.append(step.data.budget_llm_tokens)
            scope, data = Scope.of(step), step.data
            await bus.publish_event(
                scope.make(
                    AgentStarted,
                    AgentStartedData(agent=data.agent, step=data.step),
                    id=f"{step.run_id}:{data.step}:agent_started",
                    agent=data.agent,
                )
            )
            await bus.publish_event(
                scope.make(
                    AgentCompleted,
                    AgentCompletedData(
                        agent=data.agent,
                        step=data.step,
                        duration_ms=5,
                        summary="planned",
                        tokens=tokens,
                        brain="llm",
                        output=SupervisorOutput(plan=["triage", "reporting"]),
                    ),
                    id=f"{step.run_id}:{data.step}:agent_completed",
                    agent=data.agent,
                )
            )
            await msg.ack()
