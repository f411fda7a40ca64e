"""The orchestrator's decisions, from states folded out of events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apex_contracts import Event, new_id, parse_event
from apex_orchestrator.policy import (
    Accept,
    Cancel,
    Complete,
    Done,
    Fail,
    RunLimits,
    RunStep,
    next_action,
    next_deadline,
)
from apex_orchestrator.state import RunState

RUN = new_id("run")
TENANT, USER, THREAD = new_id("ten"), new_id("usr"), new_id("thr")
T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)
REPORT = {"period": {}, "total_cost_usd": 0, "requests": 0}
# what each event needs beyond what a test says about it
FILLER: dict[str, dict[str, Any]] = {
    "run.accepted": {"message_id": new_id("msg"), "question": "how much?"},
    "agent_completed": {"summary": "done", "duration_ms": 5},
    "tool_completed": {"tool": "cost_breakdown", "status": "ok", "duration_ms": 5},
    "run.completed": {"status": "completed", "duration_ms": 5},
    "run.cancel_requested": {"requested_by": "usr"},
}


def ev(kind: str, run: str = RUN, at: datetime = T0, **data: Any) -> Event:
    """A typed event of the thread, as the orchestrator reads it from the log."""
    if kind == "run.completed":
        data["response"] = {"report": REPORT, **data["response"]}
    return parse_event(
        {
            "id": new_id("evt"),
            "type": kind,
            "tenant_id": TENANT,
            "user_id": USER,
            "thread_id": THREAD,
            "run_id": run,
            "occurred_at": at.isoformat(),
            "data": {**FILLER.get(kind, {}), **data},
        }
    )


def output(agent: str, **fields: Any) -> dict[str, Any]:
    return {"agent": agent, **fields}


def reporting_output() -> dict[str, Any]:
    return output(
        "reporting",
        status="needs_data",
        response={
            "text": "upload data",
            "kind": "guidance",
            "report": REPORT,
        },
    )


def fold(*events: Event) -> RunState:
    return RunState.fold(RUN, list(enumerate(events, start=1)))


def decide(state: RunState, now: datetime = T0, **limits: Any) -> object:
    return next_action(state, RunLimits(**limits), now)


def test_a_new_run_is_accepted_first() -> None:
    assert decide(fold()) == Accept()


def test_the_supervisor_runs_first_then_the_plan() -> None:
    state = fold(ev("run.accepted"))
    assert decide(state) == RunStep(0, "supervisor")
    state = fold(
        ev("run.accepted"),
        ev("agent_started", agent="supervisor", step=0),
        ev(
            "agent_completed",
            agent="supervisor",
            step=0,
            output=output("supervisor", plan=["triage", "data_helper", "reporting"]),
        ),
    )
    assert decide(state) == RunStep(1, "triage")


def test_an_interrupted_step_is_resumed_not_skipped() -> None:
    state = fold(ev("run.accepted"), ev("agent_started", agent="supervisor", step=0))
    assert decide(state) == RunStep(0, "supervisor")


def test_out_of_scope_skips_the_data_helper() -> None:
    state = fold(
        ev("run.accepted"),
        ev(
            "agent_completed",
            agent="supervisor",
            step=0,
            output=output("supervisor", plan=["triage", "data_helper"]),
        ),
        ev(
            "agent_completed",
            agent="triage",
            step=1,
            output=output("triage", intent="out_of_scope", sufficiency="insufficient"),
        ),
    )
    assert decide(state) == RunStep(2, "reporting")


def test_reporting_runs_even_when_an_agent_failed() -> None:
    state = fold(
        ev("run.accepted"),
        ev(
            "agent_completed",
            agent="supervisor",
            step=0,
            output=output("supervisor", plan=["triage", "data_helper"]),
        ),
        ev(
            "agent_failed",
            agent="triage",
            step=1,
            error={"code": "tool_failed", "message": "x", "retryable": True},
        ),
        ev("agent_completed", agent="data_helper", step=2, output=output("data_helper")),
    )
    assert decide(state) == RunStep(3, "reporting")
    assert [f.agent for f in state.inputs().failures] == ["triage"]
    assert state.inputs().data_helper is not None and state.inputs().triage is None


def test_reporting_completes_the_run() -> None:
    state = fold(
        ev("run.accepted"),
        ev("agent_completed", agent="supervisor", step=0, output=output("supervisor", plan=["reporting"])),
        ev("agent_completed", agent="reporting", step=1, output=reporting_output()),
    )
    action = decide(state)
    assert isinstance(action, Complete) and action.output.status == "needs_data"


def test_reporting_failure_fails_the_run() -> None:
    state = fold(
        ev("run.accepted"),
        ev("agent_completed", agent="supervisor", step=0, output=output("supervisor", plan=["reporting"])),
        ev(
            "agent_failed",
            agent="reporting",
            step=1,
            error={"code": "agent_failed", "message": "x", "retryable": True},
        ),
    )
    assert isinstance(decide(state), Fail)


def test_cancellation_wins_over_the_next_step() -> None:
    state = fold(ev("run.accepted"), ev("run.cancel_requested", cause="user", requested_by="usr"))
    assert decide(state) == Cancel("user")


def test_a_terminal_event_ends_everything() -> None:
    state = fold(
        ev("run.accepted"), ev("run.failed", error={"code": "x", "message": "x", "retryable": False})
    )
    assert decide(state) == Done()


def test_limits_fail_the_run() -> None:
    state = fold(ev("run.accepted"))
    timeout = decide(state, now=T0 + timedelta(seconds=301), run_timeout_s=300)
    assert isinstance(timeout, Fail) and timeout.error.code == "run_timeout"
    tools = fold(ev("run.accepted"), *[ev("tool_completed", call_id=new_id("call")) for _ in range(4)])
    budget = decide(tools, max_tool_calls=3)
    assert isinstance(budget, Fail) and budget.error.code == "budget_exceeded"


def test_other_runs_of_the_thread_become_history() -> None:
    other = new_id("run")
    state = RunState.fold(
        RUN,
        [
            (1, ev("run.accepted", run=other, question="first?")),
            (2, ev("run.completed", run=other, response={"text": "first answer"})),
            (3, ev("run.accepted")),
        ],
    )
    assert [(t.question, t.answer) for t in state.history] == [("first?", "first answer")]
    assert state.accepted and state.last_seq == 3


def test_a_run_cancelled_before_it_was_accepted_never_starts() -> None:
    state = fold(ev("run.cancel_requested", cause="user", requested_by="usr"))
    assert decide(state) == Cancel("user")
    queued = fold(
        ev("run.queued", behind=[]), ev("run.cancel_requested", cause="interrupted", requested_by="run")
    )
    assert decide(queued) == Cancel("interrupted")


def test_a_step_running_past_its_time_fails_the_run_from_its_first_start() -> None:
    started = T0 + timedelta(seconds=10)
    state = fold(
        ev("run.accepted"),
        ev("agent_started", at=started, agent="supervisor", step=0),
    )
    assert decide(state, now=started + timedelta(seconds=59), step_timeout_s=60) == RunStep(0, "supervisor")
    late = decide(state, now=started + timedelta(seconds=60), step_timeout_s=60)
    assert isinstance(late, Fail) and late.error.code == "step_timeout"
    assert next_deadline(state, RunLimits(step_timeout_s=60, run_timeout_s=300)) == started + timedelta(
        seconds=60
    )


def test_an_agent_stopped_by_a_budget_ends_the_run_with_that_limit() -> None:
    state = fold(
        ev("run.accepted"),
        ev("agent_completed", agent="supervisor", step=0, output=output("supervisor", plan=["triage"])),
        ev(
            "agent_failed",
            agent="triage",
            step=1,
            error={"code": "budget_exceeded", "message": "tool budget", "retryable": False},
        ),
    )
    action = decide(state)
    assert isinstance(action, Fail) and action.error.code == "budget_exceeded"


def test_tokens_over_the_limit_fail_the_run() -> None:
    state = fold(
        ev("run.accepted"),
        ev(
            "agent_completed",
            agent="supervisor",
            step=0,
            tokens=900,
            output=output("supervisor", plan=["reporting"]),
        ),
    )
    action = decide(state, max_llm_tokens=500)
    assert isinstance(action, Fail) and action.error.code == "budget_exceeded"
    assert "500" in action.error.message


def test_the_run_deadline_is_its_wall_clock_before_any_step_starts() -> None:
    state = fold(ev("run.accepted"))
    assert next_deadline(state, RunLimits(run_timeout_s=30)) == T0 + timedelta(seconds=30)
    assert next_deadline(fold(), RunLimits()) is None
