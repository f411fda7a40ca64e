"""Composition root of the agents service."""

from __future__ import annotations

import asyncio
import logging

import httpx
from pydantic import ValidationError

from apex_agents.brains import build_agents, llm_config
from apex_agents.handlers import build_router
from apex_agents.metrics import agents_metrics
from apex_agents.settings import AgentsSettings
from apex_agents.stepper import StepRunner
from apex_contracts import (
    AgentFailed,
    AgentFailedData,
    AgentStep,
    ErrorCode,
    ErrorInfo,
    Scope,
    parse_command,
    price_table,
)
from apex_contracts.dedupe_ids import agent_event_id
from apex_contracts.streams import AGENT_STEP_CONSUMER, with_capacity
from apex_runtime import ServiceHost, configure_logging, configure_tracing, poison_guard
from apex_runtime.consumers import heartbeat_every

log = logging.getLogger(__name__)


def describe_planner(settings: AgentsSettings, details: dict[str, float | int | str]) -> str:
    """Which brain answers, in the logs and in /readyz and the heartbeat (``planner``):
    without APEX_LLM_BASE_URL and APEX_LLM_MODEL the offline planner answers every run,
    which an operator must see, not discover from the reports."""
    config = llm_config(settings)
    if config is None:
        details["planner"] = "offline"
        log.warning(
            "no language model configured (APEX_LLM_BASE_URL, APEX_LLM_MODEL): "
            "the offline planner answers every run (fallback)"
        )
        return "offline"
    details["planner"] = "llm"
    details["llm_model"] = config.model
    log.info("language model %s at %s; the offline planner is the fallback", config.model, config.base_url)
    return "llm"


async def main(stop: asyncio.Event, settings: AgentsSettings | None = None) -> None:
    settings = settings or AgentsSettings()
    configure_logging("agents", settings.log_level, settings.log_format)
    tracing = configure_tracing("agents", settings.otlp_endpoint)
    host = ServiceHost("agents", settings, settings.agents_port)
    bus = await host.connect()
    # the language model's breaker: its state shows on /metrics and in heartbeats
    breaker = host.health.breaker(
        "llm",
        threshold=settings.llm_breaker_threshold,
        reset_after_s=settings.llm_breaker_reset_s,
        code=ErrorCode.LLM_UNAVAILABLE,
    )
    describe_planner(settings, host.health.details)
    http = httpx.AsyncClient()  # the language model's connection pool (unused offline)
    runner = StepRunner(
        bus,
        build_agents(settings, http, breaker),
        cancels=await host.run_cancellations(),
        tool_wait_s=settings.tool_wait_s,
        keepalive_every_s=heartbeat_every(AGENT_STEP_CONSUMER),
        metrics=agents_metrics(),
    )

    async def on_poison(raw: bytes, error: ErrorInfo) -> None:
        """A step that fails on every delivery is recorded as failed; the orchestrator
        then lets reporting answer (or fails the run if reporting itself is poisoned)."""
        try:
            command = parse_command(raw)
        except (ValidationError, ValueError):
            return
        if isinstance(command, AgentStep):
            runner.metrics.errors.labels(command.data.agent, error.code).inc()
            await bus.publish_event(
                Scope.of(command).make(
                    AgentFailed,
                    AgentFailedData(agent=command.data.agent, step=command.data.step, error=error),
                    id=agent_event_id(str(command.run_id), command.data.step, "agent_failed"),
                    agent=command.data.agent,
                    causation_id=command.id,
                )
            )

    consumer = with_capacity(
        AGENT_STEP_CONSUMER, per_replica=settings.agents_max_concurrent, replicas=settings.agents_max_replicas
    )
    await bus.ensure_consumer(consumer)
    host.broker.add_middleware(poison_guard(bus.dead_letter, on_poison, [consumer]))
    host.include(build_router(runner, settings.agents_max_concurrent, consumer))
    await asyncio.to_thread(price_table.load)  # before the first run, not in it
    await host.start()
    host.watch_consumers(consumer)
    await stop.wait()
    await host.stop()
    await runner.watches.close()
    await http.aclose()
    tracing.flush()
