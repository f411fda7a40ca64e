"""Runs one ``agent.step`` command: ``agent_started``, the agent, then ``agent_completed``
or ``agent_failed``. A step whose outcome is already in the log is not run again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from apex_agents.context import StepContext
from apex_contracts import (
    AgentCompleted,
    AgentCompletedData,
    AgentFailed,
    AgentFailedData,
    AgentStarted,
    AgentStartedData,
    AgentStep,
    ApexError,
    DeadlineExceeded,
    ErrorCode,
    Scope,
    subjects,
)
from apex_contracts.report import AgentOutput
from apex_runtime import Bus, keep_alive, log_context

log = logging.getLogger(__name__)
Keepalive = Callable[[], Awaitable[None]]
_BUS_FAILURES = frozenset({ErrorCode.PUBLISH_FAILED, ErrorCode.BUS_UNAVAILABLE})


class Agent(Protocol):
    name: str

    async def run(self, ctx: StepContext) -> tuple[AgentOutput, str]:
        """Does the agent's work; returns its typed output and a one-line summary."""
        ...


class StepRunner:
    def __init__(
        self,
        bus: Bus,
        agents: dict[str, Agent],
        *,
        tool_wait_s: float = 20.0,
        keepalive_every_s: float = 3.0,
    ) -> None:
        self.bus = bus
        self.agents = agents
        self.tool_wait_s = tool_wait_s
        self.keepalive_every_s = keepalive_every_s

    async def run(self, command: AgentStep, keepalive: Keepalive) -> None:
        scope = Scope.of(command)
        data = command.data
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        with log_context(tenant_id=scope.tenant_id, run_id=command.run_id, agent=data.agent):
            async with self.bus.watch(subject) as watch, keep_alive(keepalive, self.keepalive_every_s):
                start_seq = await self._already_done_or_start(command, subject)
                if start_seq is None:
                    return
                await self.bus.publish_event(scope.make(
                    AgentStarted, AgentStartedData(agent=data.agent, step=data.step),
                    id=f"{command.run_id}:{data.step}:agent_started", agent=data.agent,
                    causation_id=command.id,
                ))
                ctx = StepContext(self.bus, command, watch, start_seq, self.tool_wait_s)
                await self._execute(command, scope, ctx)

    async def _already_done_or_start(self, command: AgentStep, subject: str) -> int | None:
        """None when this step already has an outcome; else the seq to scan tool results
        from (the step's own ``agent_started`` if an earlier attempt got that far)."""
        start_seq = 0
        step = command.data.step
        async for seq, raw in self.bus.read_subject(subject):
            event: dict[str, Any] = orjson.loads(raw)
            if event.get("run_id") != command.run_id:
                continue
            kind = event.get("type")
            if kind in ("agent_completed", "agent_failed") and event["data"]["step"] == step:
                return None
            if kind == "agent_started" and event["data"]["step"] == step:
                start_seq = seq - 1
            if kind == "run.accepted" and not start_seq:
                start_seq = seq
        return start_seq

    async def _execute(self, command: AgentStep, scope: Scope, ctx: StepContext) -> None:
        data = command.data
        started = time.perf_counter()
        agent = self.agents[data.agent]
        try:
            output, summary = await asyncio.wait_for(agent.run(ctx), data.deadline_ms / 1000)
        except ApexError as exc:
            if exc.code in _BUS_FAILURES:
                raise  # the step is retried as a whole; its facts are deduplicated
            await self._fail(command, scope, exc)
            return
        except TimeoutError:
            await self._fail(command, scope, DeadlineExceeded(
                f"The {data.agent} agent ran out of time.", code=ErrorCode.STEP_TIMEOUT
            ))
            return
        await self.bus.publish_event(scope.make(
            AgentCompleted,
            AgentCompletedData(
                agent=data.agent, step=data.step, summary=summary, output=output,
                duration_ms=int((time.perf_counter() - started) * 1000),
            ),
            id=f"{command.run_id}:{data.step}:agent_completed", agent=data.agent,
            causation_id=command.id,
        ))

    async def _fail(self, command: AgentStep, scope: Scope, exc: ApexError) -> None:
        log.warning("agent %s failed: %s", command.data.agent, exc.message)
        await self.bus.publish_event(scope.make(
            AgentFailed,
            AgentFailedData(agent=command.data.agent, step=command.data.step, error=exc.info()),
            id=f"{command.run_id}:{command.data.step}:agent_failed", agent=command.data.agent,
            causation_id=command.id,
        ))

