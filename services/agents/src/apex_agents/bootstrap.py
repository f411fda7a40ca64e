"""Composition root of the agents service."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from apex_agents.handlers import build_router
from apex_agents.offline import offline_agents
from apex_agents.settings import AgentsSettings
from apex_agents.stepper import StepRunner
from apex_contracts import AgentFailed, AgentFailedData, AgentStep, ErrorInfo, Scope, parse_command
from apex_contracts.streams import AGENT_STEP_CONSUMER
from apex_runtime import ServiceHost, configure_logging, poison_guard


async def main(stop: asyncio.Event, settings: AgentsSettings | None = None) -> None:
    settings = settings or AgentsSettings()
    configure_logging("agents", settings.log_level, settings.log_format)
    host = ServiceHost("agents", settings, settings.agents_port)
    bus = await host.connect()
    runner = StepRunner(bus, offline_agents(), tool_wait_s=settings.tool_wait_s)  # type: ignore[arg-type]

    async def publish_raw(subject: str, data: bytes, headers: dict[str, str]) -> None:
        await bus.js.publish(subject, data, headers=headers)

    async def on_poison(raw: bytes, error: ErrorInfo) -> None:
        """A step that fails on every delivery is recorded as failed; the orchestrator
        then lets reporting answer (or fails the run if reporting itself is poisoned)."""
        try:
            command = parse_command(raw)
        except (ValidationError, ValueError):
            return
        if isinstance(command, AgentStep):
            await bus.publish_event(Scope.of(command).make(
                AgentFailed,
                AgentFailedData(agent=command.data.agent, step=command.data.step, error=error),
                id=f"{command.run_id}:{command.data.step}:agent_failed",
                agent=command.data.agent,
                causation_id=command.id,
            ))

    host.broker.add_middleware(poison_guard(publish_raw, on_poison, [AGENT_STEP_CONSUMER]))
    host.include(build_router(runner, settings.agents_max_concurrent))
    await host.start()
    await stop.wait()
    await host.stop()
