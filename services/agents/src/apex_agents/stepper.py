"""Runs one ``agent.step`` command: ``agent_started``, the agent, then ``agent_completed``
or ``agent_failed``. A step whose outcome is already in the log is not run again, nor a
step of a run that ended or whose cancellation was requested.

Each delivery of the command is an attempt of the step with its own identity: what it
streams (``message.delta``) carries the attempt. An attempt that finds text streamed by
earlier ones (they died mid-stream) first publishes ``message.superseded`` naming those
messages, so readers drop them; an earlier attempt still alive (it was paused) stops as
soon as it sees that, and an attempt that finds a later one's text does not start.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.context import Context
from prometheus_client import CollectorRegistry

from apex_agents.context import StepContext, event_types, thread_event
from apex_agents.metrics import AgentsMetrics
from apex_contracts import (
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
    Event,
    MessageDelta,
    MessageSuperseded,
    MessageSupersededData,
    RunAccepted,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    Scope,
    subjects,
)
from apex_contracts.dedupe_ids import agent_event_id, message_superseded_id
from apex_contracts.report import AgentOutput
from apex_runtime import Bus, SubjectWatch, WatchPool, keep_alive, log_context, tracing
from apex_runtime.consumers import RunCancellations

log = logging.getLogger(__name__)
Keepalive = Callable[[], Awaitable[None]]
_BUS_FAILURES = frozenset({ErrorCode.PUBLISH_FAILED, ErrorCode.BUS_UNAVAILABLE})
# Events after which a run needs no more work.
_RUN_STOPS = (RunCancelRequested, RunCompleted, RunFailed, RunCancelled)
# what a step's stopper looks for among the run's events
_STOPPING = event_types(MessageSuperseded, *_RUN_STOPS)


@dataclass
class Start:
    """Where a step attempt starts: the seq to scan tool results from, and the messages
    (ids, in order) that earlier attempts streamed."""

    seq: int = 0
    partial: dict[str, None] = field(default_factory=dict)


def fold_start(start: Start, seq: int, event: Event, step: int, attempt: int) -> bool:
    """Folds one event of the run into ``start``; True when the step must not run (it
    has an outcome, the run stopped, or a later attempt of the step streamed)."""
    match event:
        case AgentCompleted() | AgentFailed() if event.data.step == step:
            return True
        case RunCancelRequested() | RunCompleted() | RunFailed() | RunCancelled():
            return True  # the run stopped
        case AgentStarted() if event.data.step == step:
            start.seq = seq - 1
        case RunAccepted() if not start.seq:
            start.seq = seq
        case MessageDelta() | MessageSuperseded() if event.data.step == step:
            if event.data.attempt > attempt:
                return True
            if isinstance(event, MessageDelta) and event.data.attempt < attempt:
                start.partial.setdefault(event.data.message_id, None)
        case _:
            pass
    return False


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
        # the run's thread, followed once per run in this process (its steps share it)
        self.watches = WatchPool(bus)

    async def run(
        self,
        command: AgentStep,
        keepalive: Keepalive,
        headers: Mapping[str, Any] | None = None,
        attempt: int = 1,
    ) -> None:
        """Runs the step; ``headers`` of the command carry the trace it belongs to;
        ``attempt`` is this delivery's number (JetStream counts them): the attempt's
        identity for what it streams."""
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
            async with (
                self.watches.watch(subject, data.after_seq) as watch,
                keep_alive(keepalive, self.keepalive_every_s),
            ):
                start = await self._already_done_or_start(command, subject, watch, attempt)
                if start is None:
                    return
                await self.bus.publish_event(
                    scope.make(
                        AgentStarted,
                        AgentStartedData(agent=data.agent, step=data.step),
                        id=agent_event_id(str(command.run_id), data.step, "agent_started"),
                        agent=data.agent,
                        causation_id=command.id,
                    )
                )
                if start.partial:
                    await self._supersede(command, scope, attempt, start.partial)
                ctx = StepContext(self.bus, command, watch, start.seq, self.tool_wait_s, attempt)
                try:
                    await self.cancels.run(
                        str(command.run_id), self._interruptible(command, scope, ctx, watch, parent)
                    )
                except Cancelled as exc:
                    log.info(
                        "step %d (%s) attempt %d interrupted: %s", data.step, data.agent, attempt, exc.message
                    )

    async def _interruptible(
        self, command: AgentStep, scope: Scope, ctx: StepContext, watch: SubjectWatch, parent: Context | None
    ) -> None:
        """The step, stopped as soon as its run stops (seen on the thread), or as soon as a
        later attempt of the step supersedes this one (this attempt alone stops: the later
        one may run in this very process)."""
        work = asyncio.ensure_future(self._traced(command, scope, ctx, parent))
        superseded = asyncio.Event()
        stopper = asyncio.create_task(
            self._stop_when_run_stops(command, watch, ctx.attempt, work, superseded)
        )
        try:
            await work
        except asyncio.CancelledError:
            if superseded.is_set():
                raise Cancelled(f"attempt {ctx.attempt} of step {command.data.step} was superseded") from None
            raise
        finally:
            if not work.done():
                work.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper

    async def _stop_when_run_stops(
        self,
        command: AgentStep,
        watch: SubjectWatch,
        attempt: int,
        work: asyncio.Future[None],
        superseded: asyncio.Event,
    ) -> None:
        """Interrupts the run's work here when it stops; cancels ``work`` alone (and sets
        ``superseded``) when a later attempt of this step superseded it."""
        run_id, step = str(command.run_id), command.data.step

        def superseding(event: Event | None) -> bool:
            return (
                isinstance(event, MessageSuperseded)
                and event.run_id == run_id
                and event.data.step == step
                and event.data.attempt > attempt
            )

        def stops(message: dict[str, Any]) -> bool:
            event = thread_event(message, _STOPPING)
            return superseding(event) or (isinstance(event, _RUN_STOPS) and event.run_id == run_id)

        try:
            found = await watch.wait_for(
                stops, timeout=command.data.deadline_ms / 1000 + 60.0, scan_after_seq=None
            )
        except TimeoutError:
            return
        if superseding(thread_event(found)):
            superseded.set()
            work.cancel()
            return
        self.cancels.cancel(run_id)

    async def _already_done_or_start(
        self, command: AgentStep, subject: str, watch: SubjectWatch, attempt: int
    ) -> Start | None:
        """None when this step already has an outcome, its run stopped, or a later attempt
        of it has streamed (this one is stale); else where to scan tool results from (the
        step's own ``agent_started`` if an earlier attempt got that far) and the messages
        earlier attempts streamed. Reads the run's part of the thread (from the command's
        ``after_seq``), which the watch holds once it caught up with the log: on a first
        delivery, through the ``seen_seq`` the orchestrator had read when it sent the step
        (a run that stops after that reaches the step through its stopper; an outcome
        stored after it can only be another worker's, of a step the orchestrator sent
        again while that worker ran it, a race that reading the log's last seq narrows by
        no more than the command's time in the queue); on a redelivery, through the log's
        last seq, where this step's earlier attempts are."""
        through = command.data.seen_seq if attempt == 1 else 0
        await watch.through(through or await self.bus.last_seq(subject), timeout=self.tool_wait_s)
        start = Start()
        step = command.data.step
        for held in watch.after(command.data.after_seq):
            event = thread_event(held.message)
            if event is None or event.run_id != command.run_id:
                continue
            if fold_start(start, held.seq, event, step, attempt):
                return None
        return start

    async def _supersede(
        self, command: AgentStep, scope: Scope, attempt: int, partial: dict[str, None]
    ) -> None:
        """Tells readers that what earlier attempts of this step streamed no longer counts."""
        data = command.data
        await self.bus.publish_event(
            scope.make(
                MessageSuperseded,
                MessageSupersededData(step=data.step, attempt=attempt, message_ids=list(partial)),
                id=message_superseded_id(str(command.run_id), data.step, attempt),
                agent=data.agent,
                causation_id=command.id,
            )
        )
        log.info("step %d attempt %d supersedes %d streamed message(s)", data.step, attempt, len(partial))

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
                id=agent_event_id(str(command.run_id), data.step, "agent_completed"),
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
                id=agent_event_id(str(command.run_id), command.data.step, "agent_failed"),
                agent=command.data.agent,
                causation_id=command.id,
            )
        )
        return str(exc.code)
