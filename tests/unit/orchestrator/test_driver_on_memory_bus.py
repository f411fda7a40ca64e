"""The run driver and its endings on ``MemoryBus``: the orchestrator's own handlers, no
server. A run is admitted, accepted and dispatched to its first agent; a cancellation
ends it exactly once and frees the user's slot; a second run over the limit is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from prometheus_client import CollectorRegistry

from apex_contracts import (
    ErrorCode,
    MessageCreated,
    MessageCreatedData,
    RunStart,
    RunStartData,
    Scope,
    Unavailable,
    derive_id,
    new_id,
    subjects,
)
from apex_contracts.streams import APEX_CMD, KV_USER_RUNS
from apex_orchestrator.admission import Decision, DoubleTexting, Slot, UserSlots
from apex_orchestrator.driver import Admission, RunDriver
from apex_orchestrator.endings import RunEndings
from apex_orchestrator.metrics import OrchestratorMetrics
from apex_orchestrator.policy import RunLimits
from apex_runtime import Bus, CircuitBreaker
from apex_runtime.memory import MemoryBus


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    yield bus
    await bus.close()


async def _driver(bus: Bus, *, max_runs: int = 3, policy: DoubleTexting = DoubleTexting.ENQUEUE) -> RunDriver:
    slots = UserSlots(await bus.bucket(KV_USER_RUNS), CircuitBreaker("user_runs_kv"))
    endings = RunEndings(bus, slots, OrchestratorMetrics(CollectorRegistry()))
    return RunDriver(bus, RunLimits(), endings, Admission(slots, max_runs, policy, poll_s=0.05))


async def _send(bus: Bus, tenant: str, user: str) -> RunStart:
    """What the gateway records and sends for a user's message."""
    client_msg_id = new_id("msg")
    run_id = derive_id("run", tenant, user, client_msg_id)
    scope = Scope(tenant_id=tenant, user_id=user, thread_id=new_id("thr"), run_id=run_id)
    message_id = derive_id("msg", tenant, user, client_msg_id)
    await bus.publish_event(
        scope.make(
            MessageCreated,
            MessageCreatedData(
                message_id=message_id, content="How much did we spend?", client_msg_id=client_msg_id
            ),
            id=f"{run_id}:message",
        )
    )
    return scope.make(
        RunStart,
        RunStartData(message_id=message_id, text="How much did we spend?", client_msg_id=client_msg_id),
        id=f"{run_id}:start",
    )


async def _types(bus: Bus, command: RunStart) -> list[str]:
    subject = subjects.thread_events(command.tenant_id, command.user_id, str(command.thread_id))
    return [orjson.loads(data)["type"] async for _seq, data in bus.read_subject(subject)]


async def _until(check: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():  # type: ignore[operator]
                return
            await asyncio.sleep(0.01)


async def _nothing() -> None:
    return None


async def test_a_run_is_accepted_dispatched_then_cancelled_once(bus: MemoryBus) -> None:
    driver = await _driver(bus)
    command = await _send(bus, new_id("ten"), new_id("usr"))
    driving = asyncio.create_task(driver.drive(command, keepalive=_nothing))

    async def dispatched() -> bool:
        steps = [
            orjson.loads(d) async for _s, d in bus.read_subject(subjects.CMD_AGENT_STEP, stream=APEX_CMD.name)
        ]
        return any(step["run_id"] == command.run_id for step in steps)

    await _until(dispatched)
    assert "run.accepted" in await _types(bus, command)
    slots = await bus.bucket(KV_USER_RUNS)
    key = UserSlots.key(command.tenant_id, command.user_id)
    assert command.run_id.encode() in (await slots.get(key)).value  # type: ignore[union-attr]

    scope = Scope.of(command)
    assert await driver.endings.request_cancel(scope, str(command.run_id), cause="user", requested_by="usr")
    await asyncio.wait_for(driving, 10.0)
    types = await _types(bus, command)
    assert types.count("run.cancelled") == 1 and "run.completed" not in types
    record = await slots.get(key)
    assert record is None or command.run_id.encode() not in record.value, "the slot was freed"
    # a second delivery of the same command finds the run ended and changes nothing
    await asyncio.wait_for(driver.drive(command, keepalive=_nothing), 5.0)
    assert await _types(bus, command) == types


async def test_a_run_over_the_limit_is_refused_with_reject(bus: MemoryBus) -> None:
    driver = await _driver(bus, max_runs=1, policy=DoubleTexting.REJECT)
    tenant, user = new_id("ten"), new_id("usr")
    first = await _send(bus, tenant, user)
    running = asyncio.create_task(driver.drive(first, keepalive=_nothing))
    await _until(lambda: _has(bus, first, "run.accepted"))
    second = await _send(bus, tenant, user)
    await asyncio.wait_for(driver.drive(second, keepalive=_nothing), 5.0)
    assert (await _types(bus, second))[-1] == "run.failed"
    await driver.endings.request_cancel(Scope.of(first), str(first.run_id), cause="user", requested_by=user)
    await asyncio.wait_for(running, 10.0)


async def _has(bus: Bus, command: RunStart, kind: str) -> bool:
    return kind in await _types(bus, command)


class _FailingOnce(UserSlots):
    """A slot store whose first claim waits for ``gate`` and then does not answer (the
    bus restarted under it)."""

    gate: asyncio.Event

    async def claim(self, key: str, slot: Slot, limit: int, policy: DoubleTexting) -> Decision:
        if not self.gate.is_set():
            await self.gate.wait()
            raise Unavailable(
                "The run-slot store did not answer: TimeoutError()", code=ErrorCode.STORE_UNAVAILABLE
            )
        return await super().claim(key, slot, limit, policy)


async def test_a_redelivery_waiting_on_a_driver_that_fails_drives_the_run_itself(bus: MemoryBus) -> None:
    """A command delivered again while this process still drives it waits for that
    driver; when the driver fails instead of ending the run, the waiting delivery must not
    return (its ack would remove the run's only command): it drives the run."""
    slots = _FailingOnce(await bus.bucket(KV_USER_RUNS), CircuitBreaker("user_runs_kv"))
    slots.gate = asyncio.Event()
    endings = RunEndings(bus, slots, OrchestratorMetrics(CollectorRegistry()))
    driver = RunDriver(bus, RunLimits(), endings, Admission(slots, 3, DoubleTexting.ENQUEUE, poll_s=0.05))
    command = await _send(bus, new_id("ten"), new_id("usr"))

    first = asyncio.create_task(driver.drive(command, keepalive=_nothing))
    await asyncio.sleep(0.05)
    again = asyncio.create_task(driver.drive(command, keepalive=_nothing))
    await asyncio.sleep(0.05)
    slots.gate.set()
    with pytest.raises(Unavailable):
        await first
    await _until(lambda: _has(bus, command, "run.accepted"))
    assert not again.done(), "the redelivery returned (and would be acked) for a run that has not ended"

    assert await endings.request_cancel(
        Scope.of(command), str(command.run_id), cause="user", requested_by="usr"
    )
    await asyncio.wait_for(again, 10.0)
    assert (await _types(bus, command)).count("run.cancelled") == 1
