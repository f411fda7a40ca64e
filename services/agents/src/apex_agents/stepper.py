"""Runs one ``agent.step`` command: ``agent_started``, the agent, then ``agent_completed``
or ``agent_failed``. A step whose outcome is already in the log is not run again, nor a
step of a run that ended or whose cancellation was requested.

A running step is interrupted (and publishes nothing more) when its run is cancelled or
ends: by the ``apex.ctl.cancel.<run>`` broadcast (``RunCancellations``), or, should that
be missed, by the run's own ``run.cancel_requested`` or terminal event arriving on the
thread this step already watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from opentelemetry.context import Context
from prometheus_client import CollectorRegistry

from apex_agents.context import StepContext
from apex_agents.metrics import AgentsMetrics
from apex_contracts import (
    TERMINAL,
    AgentCompleted,
    AgentCompletedData,
    AgentFailed,
    AgentFailedData,
    AgentStarted,
    AgentStartedData,
    AgentStep,
    ApexError,
    Cancelled,
    DeadlineExceeded,
    ErrorCode,
    Scope,
    subjects,
)
from apex_contracts.report import AgentOutput
from apex_runtime import Bus, SubjectWatch, keep_alive, log_context, tracing
from apex_runtime.consumers import RunCancellations

log = logging.getLogger(__name__)
Keepalive = Callable[[], Awaitable[None]]
_BUS_FAILURES = frozenset({ErrorCode.PUBLISH_FAILED, ErrorCode.BUS_UNAVAILABLE})
# Events after which a run needs no more work.
_RUN_STOPS = frozenset({"run.cancel_requested", *TERMINAL})


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
        cancels: RunCancellations | None = None,
        tool_wait_s: float = 20.0,
        keepalive_every_s: float = 2.0,
        metrics: AgentsMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.agents = agents
        self.cancels = cancels or RunCancellations()
        self.tool_wait_s = tool_wait_s
        self.keepalive_every_s = keepalive_every_s
        self.metrics = metrics or AgentsMetrics(CollectorRegistry())

    async def run(
        self, command: AgentStep, keepalive: Keepalive, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Runs the step; ``headers`` of the command carry the trace it belongs to."""
        scope = Scope.of(command)
        data = command.data
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        parent = tracing.parent_from(headers, command.run_id)
        with log_context(
            tenant_id=scope.tenant_id,
            run_id=command.run_id,
            agent=data.agent,
            trace_id=tracing.run_trace_id(str(command.run_id)),
        ):
            async with self.bus.watch(subject) as watch, keep_alive(keepalive, self.keepalive_every_s):
                start_seq = await self._already_done_or_start(command, subject)
                if start_seq is None:
                    return
                await self.bus.publish_event(
                    scope.make(
                        AgentStarted,
                        AgentStartedData(agent=data.agent, step=data.step),
                        id=f"{command.run_id}:{data.step}:agent_started",
                        agent=data.agent,
                        causation_id=command.id,
                    )
                )
                ctx = StepContext(self.bus, command, watch, start_seq, self.tool_wait_s)
                try:
                    await self.cancels.run(
                        str(command.run_id), self._interruptible(command, scope, ctx, watch, parent)
                    )
                except Cancelled:
                    log.info(
                        "step %d (%s) interrupted: the run was cancelled or ended", data.step, data.agent
                    )

    async def _interruptible(
        self, command: AgentStep, scope: Scope, ctx: StepContext, watch: SubjectWatch, parent: Context | None
    ) -> None:
        """The step, stopped as soon as its run stops (seen on the thread)."""
        stopper = asyncio.create_task(self._stop_when_run_stops(command, watch))
        try:
            await self._traced(command, scope, ctx, parent)
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper

    async def _stop_when_run_stops(self, command: AgentStep, watch: SubjectWatch) -> None:
        run_id = str(command.run_id)
        with contextlib.suppress(TimeoutError):
            await watch.wait_for(
                lambda e: e.get("run_id") == run_id and e.get("type") in _RUN_STOPS,
                timeout=command.data.deadline_ms / 1000 + 60.0,
                scan_after_seq=None,
            )
            self.cancels.cancel(run_id)

    async def _already_done_or_start(self, command: AgentStep, subject: str) -> int | None:
        """None when this step already has an outcome or its run stopped; else the seq to
        scan tool results from (the step's own ``agent_started`` if an earlier attempt got
        that far)."""
        start_seq = 0
        step = command.data.step
        async for seq, raw in self.bus.read_subject(subject):
            event: dict[str, Any] = orjson.loads(raw)
            if event.get("run_id") != command.run_id:
                continue
            kind = event.get("type")
            if kind in ("agent_completed", "agent_failed") and event["data"]["step"] == step:
                return None
            if kind in _RUN_STOPS:
                return None
            if kind == "agent_started" and event["data"]["step"] == step:
                start_seq = seq - 1
            if kind == "run.accepted" and not start_seq:
                start_seq = seq
        return start_seq

    async def _traced(
        self, command: AgentStep, scope: Scope, ctx: StepContext, parent: Context | None
    ) -> None:
        """The step inside its ``invoke_agent <agent>`` span, counted whatever happens."""
        agent = command.data.agent
        started = time.perf_counter()
        outcome = "interrupted"  # unless the step gets further
        attributes = {
            tracing.OPERATION: "invoke_agent",
            tracing.AGENT_NAME: agent,
            tracing.CONVERSATION_ID: scope.thread_id,
            tracing.RUN_ID: str(command.run_id),
            tracing.TENANT_ID: scope.tenant_id,
            tracing.STEP: command.data.step,
        }
        try:
            with tracing.span(f"invoke_agent {agent}", context=parent, attributes=attributes) as current:
                result = await self._execute(command, scope, ctx)
                outcome = "completed" if result == "completed" else "failed"
                if outcome == "failed":
                    tracing.fail(current, code=result)
                current.set_attributes(
                    {
                        "apex.brain": ctx.brain,
                        tracing.INPUT_TOKENS: ctx.input_tokens,
                        tracing.OUTPUT_TOKENS: ctx.output_tokens,
                    }
                )
        except Cancelled:
            raise
        except ApexError:
            outcome = "retried"  # the bus failed: the command is delivered again
            raise
        finally:
            self.metrics.step_done(
                agent,
                outcome,
                brain=ctx.brain,
                seconds=time.perf_counter() - started,
                input_tokens=ctx.input_tokens,
                output_tokens=ctx.output_tokens,
                cost_usd=ctx.llm_cost_usd,
            )

    async def _execute(self, command: AgentStep, scope: Scope, ctx: StepContext) -> str:
        """Runs the agent; returns ``completed`` or the code of the error it failed with."""
        data = command.data
        started = time.perf_counter()
        agent = self.agents[data.agent]
        try:
            output, summary = await asyncio.wait_for(agent.run(ctx), data.deadline_ms / 1000)
        except Cancelled:
            raise
        except ApexError as exc:
            if exc.code in _BUS_FAILURES:
                raise  # the step is retried as a whole; its facts are deduplicated
            return await self._fail(command, scope, exc)
        except TimeoutError:
            return await self._fail(
                command,
                scope,
                DeadlineExceeded(f"The {data.agent} agent ran out of time.", code=ErrorCode.STEP_TIMEOUT),
            )
        await self.bus.publish_event(
            scope.make(
                AgentCompleted,
                AgentCompletedData(
                    agent=data.agent,
                    step=data.step,
                    summary=summary,
                    output=output,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                    tokens=ctx.tokens,
                    llm_cost_usd=round(ctx.llm_cost_usd, 6),
                    brain=ctx.brain,
                ),
                id=f"{command.run_id}:{data.step}:agent_completed",
                agent=data.agent,
                causation_id=command.id,
            )
        )
        return "completed"

    async def _fail(self, command: AgentStep, scope: Scope, exc: ApexError) -> str:
        log.warning("agent %s failed: %s", command.data.agent, exc.message)
        self.metrics.errors.labels(command.data.agent, exc.code).inc()
        await self.bus.publish_event(
            scope.make(
                AgentFailed,
                AgentFailedData(agent=command.data.agent, step=command.data.step, error=exc.info()),
                id=f"{command.run_id}:{command.data.step}:agent_failed",
                agent=command.data.agent,
                causation_id=command.id,
            )
        )
        return str(exc.code)
