from __future__ import annotations

from apex_runtime import Bus
from tests.integration.orchestrator.harness import (
    GatewayStandIn,
    Machinery,
    UsageStandIn,
    User,
    assert_clean,
    run_events,
    wait_terminal,
)


async def test_a_run_completes_once(
    machinery: Machinery, bus: Bus, usage: UsageStandIn, gateway: GatewayStandIn
) -> None:
    for name in ("tools", "agents", "orchestrator"):
        await machinery.start(name)
    sent = await gateway.send(User())
    end = await wait_terminal(bus, sent)
    events = await run_events(bus, sent)
    print([e["type"] for e in events])
    assert end["type"] == "run.completed"
    assert_clean(events)
