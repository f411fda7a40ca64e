"""The sweeper ends runs that stopped and nobody drives (no terminal event, quiet for
``stall_after_s``, no ``run.start`` left in the command stream), and only those."""

from __future__ import annotations

import asyncio

from apex_contracts import TERMINAL
from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    wait_for_type,
    wait_terminal,
)

QUICK = {"stall_after_s": 1.0, "sweep_every_s": 0.2}


async def test_a_run_nobody_drives_fails_as_stalled(
    machinery: Machinery, bus: Bus, gateway: GatewayStandIn
) -> None:
    # the gateway recorded the message, then died before it could send run.start
    sent = await gateway.send(User(), start=False)
    await machinery.start("orchestrator", **QUICK)
    end = await wait_terminal(bus, sent, timeout=20)
    assert end["type"] == "run.failed"
    assert end["data"]["error"] == {
        "code": "run_stalled",
        "message": "The run stopped making progress for more than 1 s.",
        "retryable": True,
    }
    assert_clean(await run_events(bus, sent))


async def test_a_stalled_run_whose_cancel_was_requested_ends_cancelled(
    machinery: Machinery, bus: Bus, gateway: GatewayStandIn
) -> None:
    sent = await gateway.send(User(), start=False)
    await gateway.cancel(sent)
    await machinery.start("orchestrator", **QUICK)
    end = await wait_terminal(bus, sent, timeout=20)
    assert end["type"] == "run.cancelled" and end["data"]["cause"] == "user"
    assert_clean(await run_events(bus, sent))


async def test_quiet_runs_that_have_a_driver_are_left_alone(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    await machinery.start("tools")
    await machinery.start("agents")
    await machinery.start("orchestrator", max_runs_per_user=1, **QUICK)
    user = User()
    usage.hold()  # the first run waits on a tool, the second in the queue: both quiet
    first = await gateway.send(user)
    second = await gateway.send(user)
    await wait_for_type(bus, second, "run.queued")
    await asyncio.sleep(3.0)
    for sent in (first, second):
        assert not [e for e in await run_events(bus, sent) if e["type"] in TERMINAL]
    usage.release()
    for sent in (first, second):
        assert (await wait_terminal(bus, sent))["type"] == "run.completed"
