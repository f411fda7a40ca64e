"""Several orchestrator replicas share the runs; a replica that dies mid-run loses
nothing: its runs are redelivered to the other and finish, once."""

from __future__ import annotations

import asyncio
import signal

from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    until_ready,
    wait_for_type,
    wait_terminal,
)


async def test_two_orchestrators_share_runs_and_survive_one_dying(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    await machinery.start("tools")
    await machinery.start("agents")
    first, second = machinery.spawn("orchestrator"), machinery.spawn("orchestrator")
    await until_ready(first)
    await until_ready(second)
    usage.hold()  # every run stops mid-triage, driven by one of the two replicas
    runs = []
    for _ in range(6):
        runs.append(await gateway.send(User()))
        await asyncio.sleep(0.1)
    for sent in runs:
        await wait_for_type(bus, sent, "tool_executing")
    shares = [await first.metric("runs_in_flight"), await second.metric("runs_in_flight")]
    assert sum(shares) == 6 and min(shares) >= 1, f"the runs were not shared: {shares}"

    first.signal(signal.SIGKILL)
    usage.release()
    for sent in runs:
        end = await wait_terminal(bus, sent, timeout=60)
        assert end["type"] == "run.completed", first.tail()
        assert_clean(await run_events(bus, sent))
    assert await second.metric("runs_in_flight") == 0
