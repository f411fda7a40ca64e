"""The orchestrator's decision: given a run's state, what happens next. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apex_contracts import AgentName, ErrorCode, ErrorInfo
from apex_contracts.errors import CATALOGUE
from apex_contracts.report import ReportingOutput
from apex_orchestrator.state import RunState


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
    if not state.accepted:
        return Accept()
    if state.cancel_cause:
        return Cancel(state.cancel_cause)
    breach = _limit_breach(state, limits, now)
    if breach is not None:
        return Fail(breach)
    steps = sorted(state.steps.values(), key=lambda s: s.step)
    if not steps:
        return RunStep(0, "supervisor")
    last = steps[-1]
    if not last.done:
        return RunStep(last.step, last.agent)
    if last.agent == "reporting":
        if last.completed and last.output is not None:
            return Complete(ReportingOutput.model_validate(last.output))
        return Fail(last.failed or error(ErrorCode.AGENT_FAILED))
    done = {s.agent for s in steps if s.done}
    triage = state.output_of("triage") or {}
    for agent in state.plan():
        if agent in done:
            continue
        if agent == "data_helper" and triage.get("intent") == "out_of_scope":
            continue
        return RunStep(last.step + 1, agent)
    return RunStep(last.step + 1, "reporting")


def _limit_breach(state: RunState, limits: RunLimits, now: datetime) -> ErrorInfo | None:
    if state.accepted_at is not None:
        elapsed = (now - state.accepted_at).total_seconds()
        if elapsed > limits.run_timeout_s:
            return error(
                ErrorCode.RUN_TIMEOUT,
                f"The run took longer than {limits.run_timeout_s:.0f} s and was stopped.",
            )
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
    return None
