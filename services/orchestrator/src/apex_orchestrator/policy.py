"""The orchestrator's decision: given a run's state, what happens next. Pure.

Order of precedence: a run that ended stays ended; a cancellation wins over everything
else (a queued or not yet accepted run is cancelled without starting); a breached limit
fails the run; otherwise the plan goes on: supervisor, the agents it planned, reporting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from apex_contracts import AgentName, ErrorCode, ErrorInfo, utcnow
from apex_contracts.errors import CATALOGUE
from apex_contracts.report import ReportingOutput, TriageOutput
from apex_orchestrator.state import RunState

# An agent that stops because of one of these ends the run: they are the run's limits.
LIMIT_CODES = frozenset({ErrorCode.BUDGET_EXCEEDED, ErrorCode.STEP_TIMEOUT, ErrorCode.RUN_TIMEOUT})


@dataclass(frozen=True)
class RunLimits:
    run_timeout_s: float = 300.0
    step_timeout_s: float = 120.0
    max_tool_calls: int = 50
    max_llm_tokens: int = 200_000


@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class RunStep:
    step: int
    agent: AgentName


@dataclass(frozen=True)
class Complete:
    output: ReportingOutput


@dataclass(frozen=True)
class Fail:
    error: ErrorInfo


@dataclass(frozen=True)
class Cancel:
    cause: str


@dataclass(frozen=True)
class Done:
    pass


Action = Accept | RunStep | Complete | Fail | Cancel | Done


def error(code: ErrorCode, message: str | None = None) -> ErrorInfo:
    spec = CATALOGUE[code]
    return ErrorInfo(code=code.value, message=message or spec.message, retryable=spec.retryable)


def next_action(state: RunState, limits: RunLimits, now: datetime) -> Action:
    if state.terminal:
        return Done()
    if state.cancel_cause:
        return Cancel(state.cancel_cause)
    if not state.accepted:
        return Accept()
    breach = limit_breach(state, limits, now)
    if breach is not None:
        return Fail(breach)
    steps = sorted(state.steps.values(), key=lambda s: s.step)
    if not steps:
        return RunStep(0, "supervisor")
    last = steps[-1]
    if not last.done:
        return RunStep(last.step, last.agent)
    if last.agent == "reporting":
        if last.completed and isinstance(last.output, ReportingOutput):
            return Complete(last.output)
        return Fail(last.failed or error(ErrorCode.AGENT_FAILED))
    done = {s.agent for s in steps if s.done}
    triage = state.output_of("triage")
    out_of_scope = isinstance(triage, TriageOutput) and triage.intent == "out_of_scope"
    for agent in state.plan():
        if agent in done:
            continue
        if agent == "data_helper" and out_of_scope:
            continue
        return RunStep(last.step + 1, agent)
    return RunStep(last.step + 1, "reporting")


def limit_breach(state: RunState, limits: RunLimits, now: datetime) -> ErrorInfo | None:
    """The limit the run has broken, if any: wall-clock, the current step's time, tool
    calls, language-model tokens, or an agent that stopped at one of its budgets."""
    if state.accepted_at is not None and now >= state.accepted_at + timedelta(seconds=limits.run_timeout_s):
        return error(
            ErrorCode.RUN_TIMEOUT,
            f"The run took longer than {limits.run_timeout_s:g} s and was stopped.",
        )
    current = state.current_step()
    if (
        current is not None
        and current.started_at is not None
        and now >= current.started_at + timedelta(seconds=limits.step_timeout_s)
    ):
        return step_timeout(current.agent, limits)
    if state.tool_calls > limits.max_tool_calls:
        return error(
            ErrorCode.BUDGET_EXCEEDED,
            f"The run used more than {limits.max_tool_calls} tool calls.",
        )
    if state.llm_tokens > limits.max_llm_tokens:
        return error(
            ErrorCode.BUDGET_EXCEEDED,
            f"The run used more than {limits.max_llm_tokens} language-model tokens.",
        )
    for step in sorted(state.steps.values(), key=lambda s: s.step):
        if step.failed is not None and step.failed.code in LIMIT_CODES:
            return step.failed
    return None


def step_timeout(agent: str, limits: RunLimits) -> ErrorInfo:
    return error(
        ErrorCode.STEP_TIMEOUT,
        f"The {agent} agent did not finish within {limits.step_timeout_s:g} s.",
    )


def next_deadline(state: RunState, limits: RunLimits) -> datetime | None:
    """The moment a limit breaks if nothing else happens: the end of the run's wall-clock
    time or of the current step's; None before the run is accepted."""
    if state.accepted_at is None:
        return None
    deadline = state.accepted_at + timedelta(seconds=limits.run_timeout_s)
    current = state.current_step()
    if current is not None and current.started_at is not None:
        deadline = min(deadline, current.started_at + timedelta(seconds=limits.step_timeout_s))
    return deadline


def agent_deadline_ms(step_timeout_s: float) -> int:
    """The agent's own deadline, a little inside the step's: a step that runs out of time
    reports it (``agent_failed``) before the orchestrator ends the run, never after it.
    The orchestrator's deadline stays the backstop for a worker that died or hangs."""
    return int(max(step_timeout_s * 0.9, step_timeout_s - 5.0) * 1000)


def elapsed_ms(state: RunState) -> int:
    """Since the run was accepted (0 before), on this process's clock."""
    if state.accepted_at is None:
        return 0
    return max(0, int((utcnow() - state.accepted_at).total_seconds() * 1000))
