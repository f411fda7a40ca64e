"""Cancellation at each phase of a run: it always ends with ``run.cancelled {cause}``,
and work in flight (a tool, the agent step waiting for it) is interrupted, not left to
publish facts after the ending."""

from __future__ import annotations

import asyncio

from apex_contracts import TERMINAL
from apex_contracts.streams import APEX_CMD, RUN_CANCEL_CONSUMER
from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    until_detail,
    wait_for_type,
    wait_terminal,
)


async def test_cancel_interrupts_the_running_tool_and_agent_step(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    tools = await machinery.start("tools")
    agents = await machinery.start("agents")
    await machinery.start("orchestrator")
    usage.hold()  # every tool that asks persistence now hangs until released
    sent = await gateway.send(User())
    executing = await wait_for_type(bus, sent, "tool_executing")

    await gateway.cancel(sent)
    end = await wait_terminal(bus, sent)
    assert end["type"] == "run.cancelled" and end["data"]["cause"] == "user"
    # the ending is published once the run is settled; the services hear the
    # cancellation broadcast on their own time
    await until_detail(tools.port, "work_interrupted", 1)
    await until_detail(agents.port, "work_interrupted", 1)
    await until_detail(tools.port, "work_in_flight", 0)

    usage.release()  # had the tool not been interrupted, it would now complete
    await asyncio.sleep(1.0)
    events = await run_events(bus, sent)
    assert_clean(events)
    assert not [
        e
        for e in events
        if e["type"] == "tool_completed" and e["data"]["call_id"] == executing["data"]["call_id"]
    ]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["run.cancel_requested", "run.cancelled"]


async def test_cancel_while_waiting_for_an_agent_worker(
    machinery: Machinery, bus: Bus, gateway: GatewayStandIn
) -> None:
    await machinery.start("orchestrator")  # no agents: the first step waits for a worker
    sent = await gateway.send(User())
    await wait_for_type(bus, sent, "run.accepted")
    await gateway.cancel(sent, cause="changed my mind")
    end = await wait_terminal(bus, sent)
    assert end["type"] == "run.cancelled" and end["data"]["cause"] == "changed my mind"
    assert_clean(await run_events(bus, sent))


async def test_cancel_before_the_run_was_picked_up(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    sent = await gateway.send(User())  # nobody runs the orchestrator yet
    await gateway.cancel(sent)
    for name in ("tools", "agents", "orchestrator"):
        await machinery.start(name)
    end = await wait_terminal(bus, sent)
    events = await run_events(bus, sent)
    assert end["type"] == "run.cancelled" and end["data"]["cause"] == "user"
    assert_clean(events)
    assert "agent_completed" not in [e["type"] for e in events if e["data"].get("agent") == "reporting"]


async def test_cancel_of_a_queued_run_ends_it_without_starting_it(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    for name in ("tools", "agents"):
        await machinery.start(name)
    await machinery.start("orchestrator", max_runs_per_user=1)
    user = User()
    usage.hold()
    first = await gateway.send(user)
    await wait_for_type(bus, first, "tool_executing")
    second = await gateway.send(user)
    await wait_for_type(bus, second, "run.queued")

    await gateway.cancel(second)
    end = await wait_terminal(bus, second)
    assert end["type"] == "run.cancelled"
    assert [e["type"] for e in await run_events(bus, second)] == [
        "message.created",
        "run.queued",
        "run.cancel_requested",
        "run.cancelled",
    ]
    usage.release()
    assert (await wait_terminal(bus, first))["type"] == "run.completed"


async def test_cancel_after_the_end_changes_nothing(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    for name in ("tools", "agents", "orchestrator"):
        await machinery.start(name)
    sent = await gateway.send(User())
    await wait_terminal(bus, sent)
    before = await run_events(bus, sent)

    await gateway.cancel(sent)
    for _ in range(100):  # until the orchestrator has handled the cancel command
        info = await bus.js.consumer_info(APEX_CMD.name, RUN_CANCEL_CONSUMER.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cancel command was never handled")
    after = await run_events(bus, sent)
    assert after == before
    assert [e["type"] for e in after if e["type"] in TERMINAL] == ["run.completed"]
