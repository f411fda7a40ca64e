"""A run's state, rebuilt from the run's own events and nothing else.

``RunState.fold(events)`` is pure: the orchestrator that picks up a redelivered
``run.start`` after a crash folds the same events and reaches the same state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from pydantic import ValidationError

from apex_contracts import (
    AgentCompleted,
    AgentFailed,
    AgentName,
    AgentStarted,
    ErrorInfo,
    Event,
    RunAccepted,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunQueued,
    StepFailure,
    StepInputs,
    ToolCompleted,
    read_event,
)
from apex_contracts.report import AgentOutput, SupervisorOutput

log = logging.getLogger(__name__)
DEFAULT_PLAN: tuple[AgentName, ...] = ("triage", "data_helper", "reporting")


class UnreadableEvent(ValueError):
    """An event of the run that cannot be applied (a producer wrote a malformed one).
    The run cannot be decided on any more: its command fails until it is dead-lettered
    and the run ends with ``run.failed``."""


def read_logged(run_id: str, raw: bytes) -> Event | None:
    """One message of the run's thread, parsed (and upcast) where it is read: None for a
    type this orchestrator does not know, or a malformed event of another run (not this
    run's to decide on); raises UnreadableEvent for a malformed event of ``run_id``."""
    try:
        return read_event(raw)
    except (ValidationError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            message = {}
        of_run = isinstance(message, dict) and message.get("run_id") == run_id
        if of_run:
            raise UnreadableEvent(f"event {message.get('id')} of run {run_id} is malformed: {exc!r}") from exc
        log.warning("skipping a malformed event on the thread of run %s: %r", run_id, exc)
        return None


@dataclass
class StepState:
    step: int
    agent: AgentName
    started: bool = False
    started_at: datetime | None = None
    completed: bool = False
    failed: ErrorInfo | None = None
    output: AgentOutput | None = None
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
    first_seq: int = 0  # the seq of the run's first event on its thread (0: none read yet)
    steps: dict[int, StepState] = field(default_factory=dict)
    tool_calls: int = 0
    llm_tokens: int = 0
    llm_cost_usd: float = 0.0
    cancel_cause: str | None = None
    terminal: str | None = None
    history: list[Turn] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)

    @classmethod
    def fold(cls, run_id: str, events: Iterable[tuple[int, Event | None]]) -> RunState:
        """The state from the thread's events in log order (None: a message the reader
        skipped, which still counts as read)."""
        state = cls(run_id=run_id)
        questions: dict[str, str] = {}
        for seq, event in events:
            state.last_seq = max(state.last_seq, seq)
            if event is None:
                continue
            if event.run_id == run_id:
                state.first_seq = state.first_seq or seq
                state.apply(event)
            else:
                state._remember_turn(event, questions)
        return state

    def _remember_turn(self, event: Event, questions: dict[str, str]) -> None:
        """Earlier runs of the thread: their questions and answers, for follow-ups."""
        match event:
            case RunAccepted(run_id=str(other_run)):
                questions[other_run] = event.data.question
            case RunCompleted(run_id=str(other_run)) if other_run in questions:
                answer = event.data.response.text
                self.history.append(Turn(question=questions.pop(other_run), answer=answer))
            case _:
                pass

    def apply(self, event: Event) -> None:
        """Applies one event of this run; an event already applied (same id) is ignored."""
        if event.id in self.applied:
            return
        self.applied.add(event.id)
        match event:
            case RunAccepted():
                self.accepted = True
                self.accepted_at = event.occurred_at
            case RunQueued() if event.data.reason == "concurrency":
                # only the double-texting queue is the orchestrator's; the gateway's
                # waiting_for_service note says nothing about the user's run slots
                self.queued = True
            case RunCancelRequested():
                self.cancel_cause = self.cancel_cause or event.data.cause
            case RunCompleted() | RunFailed() | RunCancelled():
                self.terminal = self.terminal or event.type
            case AgentStarted() | AgentCompleted() | AgentFailed():
                self._apply_step(event)
            case ToolCompleted():
                self.tool_calls += 1
            case _:
                pass

    def _apply_step(self, event: AgentStarted | AgentCompleted | AgentFailed) -> None:
        data = event.data
        current = self.steps.setdefault(data.step, StepState(step=data.step, agent=data.agent))
        current.started = True
        current.started_at = current.started_at or event.occurred_at
        match event:
            case AgentCompleted():
                current.completed = True
                current.output = event.data.output
                current.tokens = event.data.tokens
                self.llm_tokens += current.tokens
                self.llm_cost_usd += event.data.llm_cost_usd
            case AgentFailed():
                current.failed = event.data.error
            case _:
                pass

    # --- what the next decision needs ---------------------------------------------

    def current_step(self) -> StepState | None:
        """The latest step, when it has not finished yet."""
        if not self.steps:
            return None
        last = self.steps[max(self.steps)]
        return None if last.done else last

    def output_of(self, agent: AgentName) -> AgentOutput | None:
        for step in sorted(self.steps.values(), key=lambda s: s.step, reverse=True):
            if step.agent == agent and step.completed:
                return step.output
        return None

    def plan(self) -> tuple[AgentName, ...]:
        supervisor = self.output_of("supervisor")
        if not isinstance(supervisor, SupervisorOutput):
            return DEFAULT_PLAN
        planned = tuple(supervisor.plan or DEFAULT_PLAN)
        return tuple(a for a in planned if a != "reporting") + ("reporting",)

    def inputs(self) -> StepInputs:
        """What later agents receive: every earlier agent's output, and failures."""
        outputs: dict[str, AgentOutput] = {}
        failures: list[StepFailure] = []
        for step in sorted(self.steps.values(), key=lambda s: s.step):
            if step.completed and step.output is not None:
                outputs[step.agent] = step.output
            elif step.failed is not None:
                failures.append(StepFailure(agent=step.agent, error=step.failed))
        return StepInputs.model_validate({**outputs, "failures": failures})
