"""A dependency that is down (persistence's read API) is waited out, not turned into a
failed analysis: the tool family's breaker opens (visible in the heartbeat and on
/metrics), the call is retried with backoff, and the run completes once it is back."""

from __future__ import annotations

import asyncio

import httpx

from apex_contracts import Heartbeat
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


async def test_a_tool_family_waits_out_its_dependency_behind_an_open_breaker(
    machinery: Machinery, bus: Bus, gateway: GatewayStandIn
) -> None:
    tools = await machinery.start("tools")
    await machinery.start("agents")
    await machinery.start("orchestrator")
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: object) -> None:
        beats.put_nowait(Heartbeat.model_validate_json(getattr(msg, "data", b"")))

    await bus.nc.subscribe("apex.health.tools.*", cb=on_beat)
    sent = await gateway.send(User())  # nobody answers the read API yet
    executing = await wait_for_type(bus, sent, "tool_executing")

    async with asyncio.timeout(30):
        while (beat := await beats.get()).breakers.get("tools_usage") != "open":
            pass
    assert beat.status == "degraded"
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{tools.port}/metrics")).text
    assert 'apex_circuit_breaker_open{breaker="tools_usage",service="tools"} 1.0' in metrics

    await UsageStandIn(bus).start()  # persistence is back
    end = await wait_terminal(bus, sent, timeout=40)
    assert end["type"] == "run.completed"
    events = await run_events(bus, sent)
    completed = [e for e in events if e["type"] == "tool_completed"]
    assert [(e["data"]["call_id"], e["data"]["status"]) for e in completed] == [
        (executing["data"]["call_id"], "ok"),
    ]
    assert_clean(events)
