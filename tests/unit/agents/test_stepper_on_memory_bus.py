"""The step runner on ``MemoryBus``: a step publishes ``agent_started`` and the agent's
``agent_completed`` (with its typed output) once; a redelivery of a finished step runs
nothing and publishes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from apex_agents.stepper import StepRunner
from apex_contracts import AgentStep, AgentStepData, Scope, new_id, subjects
from apex_contracts.report import SupervisorOutput
from apex_runtime.memory import MemoryBus


class Planner:
    """An agent that plans without tools, and counts its runs."""

    name = "supervisor"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, ctx: object) -> tuple[SupervisorOutput, str]:
        self.runs += 1
        return SupervisorOutput(plan=["triage", "reporting"], note="plan"), "planned"


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    yield bus
    await bus.close()


async def _nothing() -> None:
    return None


async def test_a_step_publishes_its_start_and_output_once(bus: MemoryBus) -> None:
    planner = Planner()
    runner = StepRunner(bus, {"supervisor": planner})  # type: ignore[dict-item]
    scope = Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )
    command = scope.make(
        AgentStep,
        AgentStepData(agent="supervisor", step=1, question="What did we spend?"),
        id=f"{scope.run_id}:1:agent.step",
        agent="supervisor",
    )
    await runner.run(command, keepalive=_nothing)
    await runner.run(command, keepalive=_nothing, attempt=2)  # redelivered after it finished

    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    events = [orjson.loads(data) async for _seq, data in bus.read_subject(subject)]
    assert [e["type"] for e in events] == ["agent_started", "agent_completed"]
    assert events[1]["data"]["output"] == {
        "agent": "supervisor",
        "plan": ["triage", "reporting"],
        "note": "plan",
    }
    assert planner.runs == 1


class CountingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.last_seq_reads = 0

    async def last_seq(self, subject: str, stream: str = "APEX_EVT", *, leader: bool = False) -> int:
        self.last_seq_reads += 1
        return await super().last_seq(subject, stream, leader=leader)


async def test_a_first_delivery_reads_the_thread_through_what_the_orchestrator_saw() -> None:
    """The orchestrator names the thread's last seq it had read (``seen_seq``): a first
    delivery reads the thread through there without asking the log, and still finds an
    outcome stored before it; a redelivery asks the log."""
    bus = CountingBus()
    planner = Planner()
    runner = StepRunner(bus, {"supervisor": planner})  # type: ignore[dict-item]
    scope = Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )

    def step(seen_seq: int) -> AgentStep:
        return scope.make(
            AgentStep,
            AgentStepData(agent="supervisor", step=1, question="What did we spend?", seen_seq=seen_seq),
            id=f"{scope.run_id}:1:agent.step",
            agent="supervisor",
        )

    await runner.run(step(0), keepalive=_nothing)
    assert (planner.runs, bus.last_seq_reads) == (1, 1)
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    stored = await MemoryBus.last_seq(bus, subject)
    await runner.run(step(stored), keepalive=_nothing)  # sent again by a restarted orchestrator
    assert (planner.runs, bus.last_seq_reads) == (1, 1), "the outcome was found without asking the log"
    await runner.run(step(stored), keepalive=_nothing, attempt=2)
    assert (planner.runs, bus.last_seq_reads) == (1, 2), "a redelivery asks the log"
    await bus.close()
