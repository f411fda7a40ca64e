"""Composition root of the orchestrator."""

from __future__ import annotations

import asyncio

from apex_contracts.streams import RUN_CANCEL_CONSUMER, RUN_START_CONSUMER
from apex_orchestrator.driver import RunDriver
from apex_orchestrator.handlers import build_router, poison_handler
from apex_orchestrator.settings import OrchestratorSettings
from apex_runtime import ServiceHost, configure_logging, poison_guard


async def main(stop: asyncio.Event, settings: OrchestratorSettings | None = None) -> None:
    settings = settings or OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_format)
    host = ServiceHost("orchestrator", settings, settings.orchestrator_port)
    bus = await host.connect()
    driver = RunDriver(bus, settings.limits())
    router = build_router(driver, bus, settings.orchestrator_max_runs)

    async def publish_raw(subject: str, data: bytes, headers: dict[str, str]) -> None:
        await bus.js.publish(subject, data, headers=headers)

    host.broker.add_middleware(
        poison_guard(publish_raw, poison_handler(bus), [RUN_START_CONSUMER, RUN_CANCEL_CONSUMER])
    )
    host.include(router)
    await host.start()
    await stop.wait()
    await host.stop()
