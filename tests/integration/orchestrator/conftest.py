"""Each test gets its own NATS server (the streams, consumers and buckets of the run
machinery have fixed names) and closes every service it started."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from apex_cli.embedded import EmbeddedServer
from apex_runtime import Bus
from tests.integration.orchestrator.harness import GatewayStandIn, Machinery, UsageStandIn


@pytest.fixture
async def machinery(server_factory: Callable[[str], EmbeddedServer]) -> AsyncIterator[Machinery]:
    server = server_factory("nats")
    running = Machinery(server.url, Path(tempfile.mkdtemp(prefix="apex-orch-")))
    await running.connect()
    try:
        yield running
    finally:
        await running.close()
        server.stop()


@pytest.fixture
def bus(machinery: Machinery) -> Bus:
    assert machinery.bus is not None
    return machinery.bus


@pytest.fixture
async def usage(bus: Bus) -> UsageStandIn:
    return await UsageStandIn(bus).start()


@pytest.fixture
def gateway(bus: Bus) -> GatewayStandIn:
    return GatewayStandIn(bus)
