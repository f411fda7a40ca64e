"""Composition root of the tools service."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from apex_contracts import ErrorCode, ErrorInfo, ToolCall, parse_command, price_table
from apex_contracts.streams import KV_TOOL_LEDGER, TOOL_CALL_CONSUMER, with_capacity
from apex_runtime import ServiceHost, configure_logging, configure_tracing, poison_guard
from apex_tools.executor import ToolExecutor
from apex_tools.handlers import build_router
from apex_tools.ledger import KvLedger
from apex_tools.metrics import tools_metrics
from apex_tools.ports import BusUsageQueries
from apex_tools.registry import Tool, default_tools
from apex_tools.settings import ToolsSettings


async def main(
    stop: asyncio.Event, settings: ToolsSettings | None = None, tools: dict[str, Tool] | None = None
) -> None:
    """Runs the tools service until ``stop``; ``tools`` replaces the default registry
    (a deployment's own tools, or a test's)."""
    settings = settings or ToolsSettings()
    configure_logging("tools", settings.log_level, settings.log_format)
    tracing = configure_tracing("tools", settings.otlp_endpoint)
    host = ServiceHost("tools", settings, settings.tools_port)
    bus = await host.connect()
    ledger_breaker = host.health.breaker(
        "tool_ledger", threshold=5, reset_after_s=2.0, code=ErrorCode.STORE_UNAVAILABLE
    )
    executor = ToolExecutor(
        bus,
        KvLedger(await bus.bucket(KV_TOOL_LEDGER), ledger_breaker),
        BusUsageQueries(bus, settings.tools_query_timeout_s),
        tools or default_tools(),
        lease_s=settings.tools_lease_s,
        cancels=await host.run_cancellations(),
        health=host.health,
        metrics=tools_metrics(),
    )
    for family in sorted({tool.family for tool in executor.tools.values()}):
        executor.breaker(family)  # registered up front: visible before the first failure

    async def on_poison(raw: bytes, error: ErrorInfo) -> None:
        """A tool call that can never run still completes, with the error, so the agent
        waiting for it carries on."""
        try:
            command = parse_command(raw)
        except (ValidationError, ValueError):
            return
        if isinstance(command, ToolCall):
            await executor.fail(command, error)

    consumer = with_capacity(
        TOOL_CALL_CONSUMER, per_replica=settings.tools_max_concurrent, replicas=settings.tools_max_replicas
    )
    await bus.ensure_consumer(consumer)
    host.broker.add_middleware(poison_guard(bus.dead_letter, on_poison, [consumer]))
    host.include(build_router(executor, settings.tools_max_concurrent, consumer))
    await asyncio.to_thread(price_table.load)  # before the first run, not in it
    await host.start()
    host.watch_consumers(consumer)
    await stop.wait()
    await host.stop()
    tracing.flush()
