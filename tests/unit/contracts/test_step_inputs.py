"""``AgentStepData.inputs`` is typed and reads the payloads written before it was."""

from __future__ import annotations

from typing import Any

from apex_contracts import AgentStep, AgentStepData, Scope, StepFailure, StepInputs, new_id, parse_command
from apex_contracts.errors import ErrorInfo
from apex_contracts.report import DataHelperOutput, SupervisorOutput, TriageOutput

SCOPE = Scope(tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run"))


def old_command(inputs: dict[str, Any]) -> dict[str, Any]:
    """An ``agent.step`` as the orchestrator wrote it when inputs were a plain dict."""
    return {
        "id": f"{SCOPE.run_id}:3:agent.step",
        "type": "agent.step",
        "tenant_id": SCOPE.tenant_id,
        "user_id": SCOPE.user_id,
        "thread_id": SCOPE.thread_id,
        "run_id": SCOPE.run_id,
        "agent": "reporting",
        "data": {"agent": "reporting", "step": 3, "question": "how much?", "inputs": inputs},
    }


def test_an_old_untyped_payload_still_parses() -> None:
    inputs = {
        "supervisor": {"agent": "supervisor", "plan": ["triage", "data_helper"]},
        "triage": {"agent": "triage", "intent": "cost", "sufficiency": "sufficient"},
        "failures": [
            {"agent": "data_helper", "error": {"code": "tool_failed", "message": "x", "retryable": True}}
        ],
    }
    command = parse_command(old_command(inputs))
    assert isinstance(command, AgentStep)
    got = command.data.inputs
    assert got.supervisor == SupervisorOutput(plan=["triage", "data_helper"])
    assert got.triage is not None and got.triage.intent == "cost"
    assert got.data_helper is None and got.reporting is None
    assert got.failures == [
        StepFailure(agent="data_helper", error=ErrorInfo(code="tool_failed", message="x", retryable=True))
    ]
    empty = parse_command(old_command({}))
    assert isinstance(empty, AgentStep) and empty.data.inputs == StepInputs()


def test_typed_inputs_keep_the_wire_shape() -> None:
    inputs = StepInputs(
        triage=TriageOutput(intent="general", sufficiency="insufficient"), data_helper=DataHelperOutput()
    )
    command = SCOPE.make(
        AgentStep,
        AgentStepData(agent="reporting", step=2, question="q", inputs=inputs),
        id="x",
        agent="reporting",
    )
    wire = command.model_dump(mode="json", exclude_none=True)["data"]["inputs"]
    assert set(wire) == {"triage", "data_helper", "failures"}, "absent agents stay absent"
    assert parse_command(command.wire()) == command
