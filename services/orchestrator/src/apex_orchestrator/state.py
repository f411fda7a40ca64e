"""A run's state, rebuilt from the run's own events and nothing else.

``RunState.fold(events)`` is pure: the orchestrator that picks up a redelivered
``run.start`` after a crash folds the same events and reaches the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from apex_contracts import TERMINAL, AgentName, ErrorInfo

DEFAULT_PLAN: tuple[AgentName, ...] = ("triage", "data_helper", "reporting")


class UnreadableEvent(ValueError):
    """An event of the run that cannot be applied (a producer wrote a malformed one).
    The run cannot be decided on any more: its command fails until it is dead-lettered
    and the run ends with ``run.failed``."""


@dataclass
class StepState:
    step: int
    agent: AgentName
    started: bool = False
    started_at: datetime | None = None
    completed: bool = False
    failed: ErrorInfo | None = None
    output: dict[str, Any] | None = None
    tokens: int = 0

    @property
    def done(self) -> bool:
        return self.completed or self.failed is not None


@dataclass
class Turn:
    """One earlier exchange of the thread, for follow-up questions."""

    question: str
    answer: str


@dataclass
class RunState:
    run_id: str
    accepted: bool = False
    accepted_at: datetime | None = None
    queued: bool = False
    last_seq: int = 0
    steps: dict[int, StepState] = field(default_factory=dict)
    tool_calls: int = 0
    llm_tokens: int = 0
    llm_cost_usd: float = 0.0
    cancel_cause: str | None = None
    terminal: str | None = None
    history: list[Turn] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)

    @classmethod
    def fold(cls, run_id: str, events: list[tuple[int, dict[str, Any]]]) -> RunState:
        state = cls(run_id=run_id)
        questions: dict[str, str] = {}
        for seq, event in events:
            state.last_seq = max(state.last_seq, seq)
            if event.get("run_id") == run_id:
                state.apply(event)
            else:
                state._remember_turn(event, questions)
        return state

    def _remember_turn(self, event: dict[str, Any], questions: dict[str, str]) -> None:
        data = event.get("data") or {}
        other_run = event.get("run_id")
        if event.get("type") == "run.accepted" and other_run:
            questions[other_run] = str(data.get("question", ""))
        elif event.get("type") == "run.completed" and other_run in questions:
            answer = str((data.get("response") or {}).get("text", ""))
            self.history.append(Turn(question=questions.pop(other_run), answer=answer))

    def apply(self, event: dict[str, Any]) -> None:
        """Applies one event of this run; an event already applied (same id) is ignored."""
        event_id = event.get("id")
        if event_id in self.applied:
            return
        if event_id:
            self.applied.add(event_id)
        kind = event.get("type")
        data = event.get("data") or {}
        at = _time(event)
        if kind == "run.accepted":
            self.accepted = True
            self.accepted_at = at
        elif kind == "run.queued" and data.get("reason", "concurrency") == "concurrency":
            # only the double-texting queue is the orchestrator's; the gateway's
            # waiting_for_service note says nothing about the user's run slots
            self.queued = True
        elif kind == "run.cancel_requested":
            self.cancel_cause = self.cancel_cause or str(data.get("cause", "user"))
        elif kind in TERMINAL:
            self.terminal = self.terminal or kind
        elif kind in ("agent_started", "agent_completed", "agent_failed"):
            try:
                self._apply_step(kind, data, at)
            except (KeyError, TypeError, ValueError, ValidationError) as exc:
                raise UnreadableEvent(f"event {event_id} of run {self.run_id} is malformed: {exc!r}") from exc
        elif kind == "tool_completed":
            self.tool_calls += 1

    def _apply_step(self, kind: str, data: dict[str, Any], at: datetime | None) -> None:
        step = int(data["step"])
        current = self.steps.setdefault(step, StepState(step=step, agent=data["agent"]))
        current.started = True
        current.started_at = current.started_at or at
        if kind == "agent_completed":
            current.completed = True
            current.output = data.get("output")
            current.tokens = int(data.get("tokens", 0))
            self.llm_tokens += current.tokens
            self.llm_cost_usd += float(data.get("llm_cost_usd", 0.0))
        elif kind == "agent_failed":
            current.failed = ErrorInfo.model_validate(data["error"])

    # --- what the next decision needs ---------------------------------------------

    def current_step(self) -> StepState | None:
        """The latest step, when it has not finished yet."""
        if not self.steps:
            return None
        last = self.steps[max(self.steps)]
        return None if last.done else last

    def output_of(self, agent: AgentName) -> dict[str, Any] | None:
        for step in sorted(self.steps.values(), key=lambda s: s.step, reverse=True):
            if step.agent == agent and step.completed:
                return step.output
        return None

    def plan(self) -> tuple[AgentName, ...]:
        supervisor = self.output_of("supervisor")
        if supervisor is None:
            return DEFAULT_PLAN
        planned = tuple(supervisor.get("plan") or DEFAULT_PLAN)
        return tuple(a for a in planned if a != "reporting") + ("reporting",)

    def inputs(self) -> dict[str, Any]:
        """What later agents receive: every earlier agent's output, and failures."""
        out: dict[str, Any] = {}
        for step in sorted(self.steps.values(), key=lambda s: s.step):
            if step.completed and step.output is not None:
                out[step.agent] = step.output
            elif step.failed is not None:
                out.setdefault("failures", []).append(
                    {"agent": step.agent, "error": step.failed.model_dump()}
                )
        return out


def _time(event: dict[str, Any]) -> datetime | None:
    raw = event.get("occurred_at")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        return None
