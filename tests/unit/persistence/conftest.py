"""Builders of contract events for the persistence unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apex_contracts import (
    AgentCompleted,
    AgentCompletedData,
    MessageCreated,
    MessageCreatedData,
    RunAccepted,
    RunAcceptedData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    RunUsage,
    Scope,
    ThreadEvent,
    ToolExecuting,
    ToolExecutingData,
    new_id,
)
from apex_contracts.errors import ErrorInfo
from apex_contracts.report import AssistantResponse, Period, Report, SupervisorOutput
from apex_contracts.subjects import thread_events
from apex_persistence.projection.delivery import Delivery

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def scope(run: bool = True) -> Scope:
    return Scope(
        tenant_id=new_id("ten"),
        user_id=new_id("usr"),
        thread_id=new_id("thr"),
        run_id=new_id("run") if run else None,
    )


def at(event: ThreadEvent, seconds: float) -> ThreadEvent:
    return event.model_copy(update={"occurred_at": T0 + timedelta(seconds=seconds)})


def run_events(
    s: Scope, text: str = "where does my money go this month", *, failed: bool = False, tokens: int = 120
) -> list[ThreadEvent]:
    """message.created, run.accepted, a tool call, one agent, and the terminal event."""
    assert s.run_id is not None
    message_id = new_id("msg")
    call_id = new_id("call")
    events: list[ThreadEvent] = [
        s.make(
            MessageCreated,
            MessageCreatedData(message_id=message_id, content=text, client_msg_id="c1"),
            id=f"{s.run_id}:message",
        ),
        s.make(RunAccepted, RunAcceptedData(message_id=message_id, question=text), id=f"{s.run_id}:accepted"),
        s.make(
            ToolExecuting,
            ToolExecutingData(call_id=call_id, tool="usage_coverage", arguments={}),
            id=f"{s.run_id}:tool",
        ),
        s.make(
            AgentCompleted,
            AgentCompletedData(
                agent="supervisor",
                step=0,
                duration_ms=40,
                summary="planned",
                output=SupervisorOutput(plan=["triage"]),
                tokens=tokens,
            ),
            id=f"{s.run_id}:agent",
            agent="supervisor",
        ),
    ]
    if failed:
        events.append(
            s.make(
                RunFailed,
                RunFailedData(
                    error=ErrorInfo(code="tool_failed", message="boom", retryable=True),
                    duration_ms=900,
                ),
                id=f"{s.run_id}:end",
            )
        )
    else:
        events.append(
            s.make(
                RunCompleted,
                RunCompletedData(
                    status="completed",
                    duration_ms=1500,
                    usage=RunUsage(tool_calls=1, llm_tokens=tokens),
                    response=AssistantResponse(
                        text="You spent $12.00.",
                        report=Report(period=Period(), total_cost_usd=12.0, requests=3),
                    ),
                ),
                id=f"{s.run_id}:end",
            )
        )
    return [at(e, i) for i, e in enumerate(events)]


def deliveries(events: list[ThreadEvent], first_seq: int = 1) -> list[Delivery]:
    return [
        Delivery(seq, thread_events(e.tenant_id, e.user_id, e.thread_id), e.wire())
        for seq, e in enumerate(events, start=first_seq)
    ]


class Story:
    scope = staticmethod(scope)
    at = staticmethod(at)
    run_events = staticmethod(run_events)
    deliveries = staticmethod(deliveries)


@pytest.fixture
def story() -> type[Story]:
    return Story
