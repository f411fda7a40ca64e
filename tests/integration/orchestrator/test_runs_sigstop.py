"""A worker paused (SIGSTOP) past its ack wait while it holds a run's work: the other
replica takes the work over and finishes the runs; when the paused one wakes up
(SIGCONT) and carries on with stale work, the client sees no fact twice."""

from __future__ import annotations

import asyncio
import signal

import orjson
import pytest

from apex_contracts.streams import TOOL_CALL_CONSUMER
from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    Process,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    until_ready,
    wait_for_type,
    wait_terminal,
)

BUSY = {"orchestrator": "runs_in_flight", "agents": "work_in_flight", "tools": "work_in_flight"}


@pytest.mark.parametrize("victim", ["orchestrator", "agents", "tools"])
async def test_a_worker_paused_past_its_ack_wait_causes_no_duplicate(
    victim: str, machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    for name in ("tools", "agents", "orchestrator"):
        if name != victim:
            await machinery.start(name)
    replicas = [machinery.spawn(victim), machinery.spawn(victim)]
    for replica in replicas:
        await until_ready(replica)
    usage.hold()
    runs = [await gateway.send(User()) for _ in range(3)]
    for sent in runs:
        await wait_for_type(bus, sent, "tool_executing")
    paused = await _busiest(replicas, BUSY[victim])

    paused.signal(signal.SIGSTOP)
    try:
        usage.release()
        for sent in runs:  # finished by the other replica once the ack wait expired
            end = await wait_terminal(bus, sent, timeout=TOOL_CALL_CONSUMER.ack_wait_s + 40)
            assert end["type"] == "run.completed"
    finally:
        paused.signal(signal.SIGCONT)
    await asyncio.sleep(3.0)  # the paused worker carries on with what it held

    assert paused.proc.poll() is None, paused.tail()
    for sent in runs:
        assert_clean(await run_events(bus, sent))
        thread = [orjson.loads(data) async for _seq, data in bus.read_subject(sent.subject)]
        ids = [event["id"] for event in thread]
        assert len(ids) == len(set(ids))


async def _busiest(replicas: list[Process], figure: str) -> Process:
    loads = [await replica.metric(figure) for replica in replicas]
    assert max(loads) > 0, f"no replica holds work: {loads}"
    return replicas[loads.index(max(loads))]
