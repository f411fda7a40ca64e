"""A command that fails on every delivery goes to the dead-letter subject after the
allowed deliveries, and its run ends with ``run.failed`` instead of hanging."""

from __future__ import annotations

import asyncio

import orjson

from apex_contracts import subjects, utcnow
from apex_contracts.streams import RUN_START_CONSUMER
from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    User,
    assert_clean,
    dead_letters,
    run_events,
    wait_terminal,
)


async def test_a_poison_run_start_is_dead_lettered_and_its_run_fails(
    machinery: Machinery, bus: Bus, gateway: GatewayStandIn
) -> None:
    sent = await gateway.send(User(), start=False)
    # a buggy producer wrote an event of this run that no orchestrator can apply: every
    # delivery of the run's command fails on it
    malformed = {
        "id": f"{sent.run_id}:0:agent_completed",
        "type": "agent_completed",
        "tenant_id": sent.scope.tenant_id,
        "user_id": sent.scope.user_id,
        "thread_id": sent.scope.thread_id,
        "run_id": sent.run_id,
        "occurred_at": utcnow().isoformat(),
        "data": {"agent": "supervisor"},
    }
    await bus.js.publish(sent.subject, orjson.dumps(malformed), headers={"Nats-Msg-Id": malformed["id"]})
    await gateway.start(sent)
    await machinery.start("orchestrator", command_retry_backoff_s=[0.05])

    end = await wait_terminal(bus, sent, timeout=60)
    assert end["type"] == "run.failed" and end["data"]["error"]["code"] == "poison_command"
    letters = await dead_letters(bus, subjects.CMD_RUN_START)
    assert [letter["run_id"] for letter in letters] == [sent.run_id]
    # the command is settled (terminated) after its run's failure is published: a moment later
    for _ in range(100):
        info = await bus.js.consumer_info("APEX_CMD", RUN_START_CONSUMER.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.1)
    assert info.num_pending == 0 and info.num_ack_pending == 0, "the command left the work queue"
    assert_clean([e for e in await run_events(bus, sent) if e["id"] != malformed["id"]])
