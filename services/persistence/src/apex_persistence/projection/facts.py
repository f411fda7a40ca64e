"""Facts every view derives from an event the same way: the run status it implies,
the thread title it proposes, durations, tokens and the tool it names."""

from __future__ import annotations

from typing import Final

from apex_contracts import (
    AgentCompleted,
    AgentFailed,
    AgentStarted,
    AgentThinking,
    Event,
    MessageCreated,
    MessageDelta,
    MessageSuperseded,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    ToolCompleted,
    ToolExecuting,
)

TERMINAL_STATUSES: Final = frozenset({"completed", "needs_data", "failed", "cancelled"})
RUN_STATUSES: Final = ("accepted", "running", *sorted(TERMINAL_STATUSES))
_RUNNING_EVENTS = (
    AgentStarted,
    AgentThinking,
    AgentCompleted,
    AgentFailed,
    ToolExecuting,
    ToolCompleted,
    MessageDelta,
    MessageSuperseded,
)
TITLE_WORDS: Final = 8
TITLE_CHARS: Final = 80
UNTITLED: Final = "New chat"


def run_status(event: Event) -> str | None:
    """The status of the event's run once this event has happened; None when it says nothing."""
    if isinstance(event, RunAccepted | RunQueued):
        return "accepted"
    if isinstance(event, _RUNNING_EVENTS):
        return "running"
    if isinstance(event, RunCompleted):
        return event.data.status
    if isinstance(event, RunFailed):
        return "failed"
    if isinstance(event, RunCancelled):
        return "cancelled"
    return None


def status_rank(status: str) -> int:
    """Where a status sits in a run's life: accepted 0, running 1, terminal 2. A view
    never moves a run to a lower rank, whatever order its events arrive in."""
    if status in TERMINAL_STATUSES:
        return 2
    return 1 if status == "running" else 0


def title_from(content: str) -> str:
    """The first words of a message, as a thread title."""
    words = content.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        return title[: TITLE_CHARS - 1].rstrip() + "…"
    if len(words) > TITLE_WORDS:
        return title + "…"
    return title or UNTITLED


def proposed_title(event: MessageCreated) -> str:
    return (event.data.title or "").strip() or title_from(event.data.content)


def duration_ms(event: Event) -> int | None:
    if isinstance(event, AgentCompleted | ToolCompleted | RunCompleted | RunFailed | RunCancelled):
        return event.data.duration_ms
    return None


def tokens(event: Event) -> int | None:
    if isinstance(event, AgentCompleted):
        return event.data.tokens
    if isinstance(event, RunCompleted):
        return event.data.usage.llm_tokens
    return None


def tool_name(event: Event) -> str | None:
    if isinstance(event, ToolExecuting | ToolCompleted):
        return event.data.tool
    return None


def event_status(event: Event) -> str | None:
    """The outcome an event reports: a tool call's status or a run's terminal status."""
    if isinstance(event, ToolCompleted):
        return event.data.status
    if isinstance(event, RunCompleted | RunFailed | RunCancelled):
        return run_status(event)
    return None


def agent_of(event: Event) -> str | None:
    if event.agent is not None:
        return event.agent
    agent = getattr(event.data, "agent", None)
    return agent if isinstance(agent, str) else None


def error_code(event: Event) -> str | None:
    if isinstance(event, RunFailed):
        return event.data.error.code
    if isinstance(event, RunCancelled):
        return "run_cancelled"
    return None
