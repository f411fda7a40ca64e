"""Drives one run from its ``run.start`` command to exactly one terminal event.

The loop is: read the run's events from the log, fold them into ``RunState``, ask the
policy what to do next, do it (publish an event or an ``agent.step`` command), wait for
the log to move, repeat. After the first read the thread arrives by an ordered consumer
(``Bus.watch``), in the log's order, as the log stores it. Nothing is kept anywhere
else, so a replacement orchestrator that gets the redelivered command resumes exactly
where this one stopped. Before a run
is accepted it asks for one of its user's run slots (``admission``): it may start, wait
in the user's queue, be rejected, or interrupt the user's earlier runs, and whichever it
is appears in the thread as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry.trace import SpanKind

from apex_contracts import (
    TERMINAL,
    AgentStep,
    AgentStepData,
    RunAccepted,
    RunAcceptedData,
    RunCompleted,
    RunCompletedData,
    RunQueued,
    RunQueuedData,
    RunStart,
    RunUsage,
    Scope,
    subjects,
    utcnow,
)
from apex_contracts.dedupe_ids import agent_step_id, run_accepted_id, run_queued_id, terminal_id
from apex_contracts.errors import ErrorCode
from apex_orchestrator.admission import Admitted, DoubleTexting, Queued, Rejected, Slot, UserSlots
from apex_orchestrator.endings import RunEndings, fold_run
from apex_orchestrator.policy import (
    Accept,
    Cancel,
    Complete,
    Done,
    Fail,
    RunLimits,
    RunStep,
    agent_deadline_ms,
    elapsed_ms,
    error,
    next_action,
    next_deadline,
    step_timeout,
)
from apex_orchestrator.state import RunState, read_logged
from apex_runtime import Bus, SubjectWatch, keep_alive, log_context, tracing

log = logging.getLogger(__name__)
Keepalive = Callable[[], Awaitable[None]]
_STEP_WAKE = frozenset({"agent_completed", "agent_failed", "run.cancel_requested", *TERMINAL})
_QUEUE_WAKE = frozenset({"run.cancel_requested", *TERMINAL})

__all__ = ["Admission", "RunDriver", "terminal_id"]


@dataclass(frozen=True)
class Admission:
    """Per-user concurrency: at most ``max_runs_per_user`` running, the rest per ``policy``."""

    slots: UserSlots
    max_runs_per_user: int = 3
    policy: DoubleTexting = DoubleTexting.ENQUEUE
    poll_s: float = 0.5
    forget_ended_every_s: float = 5.0


@dataclass
class _Run:
    command: RunStart
    scope: Scope
    subject: str
    state: RunState
    watch: SubjectWatch

    @property
    def run_id(self) -> str:
        return str(self.command.run_id)


class RunDriver:
    def __init__(
        self,
        bus: Bus,
        limits: RunLimits,
        endings: RunEndings,
        admission: Admission,
        *,
        keepalive_every_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.limits = limits
        self.endings = endings
        self.admission = admission
        self.keepalive_every_s = keepalive_every_s
        self.metrics = endings.metrics
        self._driving: dict[str, asyncio.Future[bool]] = {}

    @property
    def runs_in_flight(self) -> int:
        return len(self._driving)

    async def drive(self, command: RunStart, keepalive: Keepalive) -> None:
        """Returns once the run has its terminal event (or already had one); raises when
        it could not get there (the command is then delivered again)."""
        run_id = str(command.run_id)
        while (first := self._driving.get(run_id)) is not None:
            # redelivered while this process drives it: wait for that driver; if it fails,
            # drive the run here (acking would leave a run with no driver and its slot held)
            async with keep_alive(keepalive, self.keepalive_every_s):
                if await asyncio.shield(first):
                    return
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._driving[run_id] = finished
        ended = False
        try:
            await self._drive(command, keepalive)
            ended = True
        finally:
            finished.set_result(ended)
            del self._driving[run_id]

    async def _drive(self, command: RunStart, keepalive: Keepalive) -> None:
        run_id = str(command.run_id)
        scope = Scope.of(command)
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        with log_context(
            tenant_id=scope.tenant_id,
            run_id=run_id,
            thread_id=scope.thread_id,
            trace_id=tracing.run_trace_id(run_id),
        ):
            async with keep_alive(keepalive, self.keepalive_every_s):
                state = await fold_run(self.bus, scope, run_id)
                # from here on the run's thread arrives by the watch's ordered consumer,
                # as the log stores it: no further reads of the log
                async with self.bus.watch(subject, after_seq=state.last_seq) as watch:
                    await self._loop(_Run(command, scope, subject, state, watch))

    async def _loop(self, run: _Run) -> None:
        while True:
            match next_action(run.state, self.limits, utcnow()):
                case Done():
                    await self.endings.settle(run.scope.tenant_id, run.scope.user_id, run.run_id)
                    return
                case Accept():
                    if await self._admit(run):
                        await self._accept(run)
                case RunStep(step=step, agent=agent):
                    await self._run_step(run, step, agent)
                case Complete(output=output):
                    await self.endings.end(
                        run.scope.make(
                            RunCompleted,
                            RunCompletedData(
                                status=output.status,
                                response=output.response,
                                duration_ms=elapsed_ms(run.state),
                                usage=RunUsage(
                                    tool_calls=run.state.tool_calls,
                                    llm_tokens=run.state.llm_tokens,
                                    llm_cost_usd=round(run.state.llm_cost_usd, 6),
                                ),
                            ),
                            id=terminal_id(run.run_id),
                            causation_id=run.command.id,
                        )
                    )
                    return
                case Fail(error=info):
                    await self.endings.fail(
                        run.scope,
                        run.run_id,
                        info,
                        duration_ms=elapsed_ms(run.state),
                        causation_id=run.command.id,
                    )
                    return
                case Cancel(cause=cause):
                    await self.endings.cancel(
                        run.scope,
                        run.run_id,
                        cause,
                        duration_ms=elapsed_ms(run.state),
                        causation_id=run.command.id,
                    )
                    return

    # --- admission ------------------------------------------------------------------

    async def _admit(self, run: _Run) -> bool:
        """True when the run may start now; False when it ended or must be decided again
        (cancelled while queued, rejected)."""
        rules = self.admission
        key = UserSlots.key(run.scope.tenant_id, run.scope.user_id)
        slot = Slot(run_id=run.run_id, thread_id=run.scope.thread_id)
        match await rules.slots.claim(key, slot, rules.max_runs_per_user, rules.policy):
            case Admitted():
                return True
            case Rejected(running=running):
                await self.endings.fail(
                    run.scope,
                    run.run_id,
                    error(
                        ErrorCode.CONCURRENCY_LIMIT,
                        f"You already have {len(running)} run(s) in progress; wait for them or cancel one.",
                    ),
                    causation_id=run.command.id,
                )
                run.state.terminal = "run.failed"
                return False
            case Queued(ahead=ahead, policy=policy, victims=victims):
                if not run.state.queued:
                    await self.bus.publish_event(
                        run.scope.make(
                            RunQueued,
                            RunQueuedData(behind=[s.run_id for s in ahead], policy=policy.value),
                            id=run_queued_id(run.run_id),
                            causation_id=run.command.id,
                        )
                    )
                    log.info("run %s queued behind %d run(s) (%s)", run.run_id, len(ahead), policy.value)
                for victim in victims:
                    await self.endings.request_cancel(
                        run.scope.model_copy(update={"thread_id": victim.thread_id}),
                        victim.run_id,
                        cause="interrupted",
                        requested_by=run.run_id,
                        causation_id=run.command.id,
                    )
                return await self._wait_turn(run, key)
        return False  # pragma: no cover - the match is exhaustive

    async def _wait_turn(self, run: _Run, key: str) -> bool:
        rules = self.admission
        loop = asyncio.get_running_loop()
        forget_at = loop.time() + rules.forget_ended_every_s
        tenant, user = run.scope.tenant_id, run.scope.user_id
        while True:
            self._catch_up(run)
            if run.state.cancel_cause or run.state.terminal:
                await rules.slots.release(key, run.run_id)
                return False
            if await rules.slots.promote(key, run.run_id, rules.max_runs_per_user):
                # the thread moved on while this run waited: fold it again (history)
                run.state = await fold_run(self.bus, run.scope, run.run_id)
                return not (run.state.cancel_cause or run.state.terminal)
            if loop.time() >= forget_at:
                forget_at = loop.time() + rules.forget_ended_every_s
                await rules.slots.forget_ended(
                    key, lambda slot: self.endings.slot_ended(tenant, user, slot), keep=run.run_id
                )
            with contextlib.suppress(TimeoutError):
                await run.watch.wait_for(
                    lambda e: e.get("run_id") == run.run_id and e.get("type") in _QUEUE_WAKE,
                    timeout=rules.poll_s,
                    scan_after_seq=run.state.last_seq,
                )

    async def _accept(self, run: _Run) -> None:
        await self.bus.publish_event(
            run.scope.make(
                RunAccepted,
                RunAcceptedData(message_id=run.command.data.message_id, question=run.command.data.text),
                id=run_accepted_id(run.run_id),
                causation_id=run.command.id,
            )
        )
        self.metrics.runs_started.inc()
        await self._until_logged(run, run_accepted_id(run.run_id))

    # --- steps ----------------------------------------------------------------------

    async def _run_step(self, run: _Run, step: int, agent: str) -> None:
        """Asks an agent worker for the step, then waits until the log says the step is
        over, or something else (a cancellation, a limit) decides the run's next move."""
        # the run's first step: its agent_started is the first thing the user sees happen
        first = not any(s.started for s in run.state.steps.values())
        await self._dispatch(run, step, agent)
        loop = asyncio.get_running_loop()
        unstarted_deadline = loop.time() + self.limits.step_timeout_s
        while True:
            self._catch_up(run)
            started = run.state.steps.get(step)
            if first and started is not None and started.started_at is not None:
                first = False
                waited = (started.started_at - run.command.occurred_at).total_seconds()
                self.metrics.first_event_seconds.observe(max(waited, 0.0))
            if next_action(run.state, self.limits, utcnow()) != RunStep(step, agent):  # type: ignore[arg-type]
                return
            if started is None and loop.time() >= unstarted_deadline:
                # no worker took the step at all (the orchestrator's own clock: the log
                # has no start to measure from)
                await self.endings.fail(
                    run.scope,
                    run.run_id,
                    step_timeout(agent, self.limits),
                    duration_ms=elapsed_ms(run.state),
                    causation_id=run.command.id,
                )
                run.state.terminal = "run.failed"
                return
            with contextlib.suppress(TimeoutError):
                await run.watch.wait_for(
                    lambda e: e.get("run_id") == run.run_id and e.get("type") in _STEP_WAKE,
                    timeout=self._wait_s(run, unstarted_deadline - loop.time() if started is None else None),
                    scan_after_seq=run.state.last_seq,
                )

    async def _dispatch(self, run: _Run, step: int, agent: str) -> None:
        """Sends the step's ``agent.step`` from a short span under the run's root span:
        the agent's ``invoke_agent`` span becomes its child through the traceparent."""
        state = run.state
        with tracing.span(
            f"dispatch {agent}",
            context=tracing.run_context(run.run_id),
            kind=SpanKind.PRODUCER,
            attributes={
                tracing.AGENT_NAME: agent,
                tracing.STEP: step,
                tracing.RUN_ID: run.run_id,
                "messaging.system": "nats",
                "messaging.destination.name": subjects.CMD_AGENT_STEP,
            },
        ):
            await self.bus.publish(
                run.scope.make(
                    AgentStep,
                    AgentStepData(
                        agent=agent,
                        step=step,
                        question=run.command.data.text,
                        inputs=state.inputs(),
                        history=[{"question": t.question, "answer": t.answer} for t in state.history[-5:]],
                        budget_tool_calls=max(0, self.limits.max_tool_calls - state.tool_calls),
                        budget_llm_tokens=max(0, self.limits.max_llm_tokens - state.llm_tokens),
                        deadline_ms=agent_deadline_ms(self.limits.step_timeout_s),
                        after_seq=max(0, state.first_seq - 1),
                        seen_seq=state.last_seq,
                    ),
                    id=agent_step_id(run.run_id, step),
                    agent=agent,  # type: ignore[arg-type]
                    causation_id=run.command.id,
                ),
                subjects.CMD_AGENT_STEP,
            )
        self.metrics.steps_dispatched.labels(agent).inc()

    def _wait_s(self, run: _Run, unstarted_left_s: float | None) -> float:
        """How long to wait for the thread before deciding again: until the next deadline,
        at most 5 s."""
        waits = [5.0]
        deadline = next_deadline(run.state, self.limits)
        if deadline is not None:
            waits.append((deadline - utcnow()).total_seconds())
        if unstarted_left_s is not None:
            waits.append(unstarted_left_s)
        return max(0.05, min(waits))

    # --- the log --------------------------------------------------------------------

    async def _until_logged(self, run: _Run, event_id: str) -> bool:
        """Waits (briefly) until the watch holds ``event_id``, which was just published,
        and applies the thread up to it."""
        with contextlib.suppress(TimeoutError):
            await run.watch.wait_for(
                lambda e: e.get("id") == event_id, timeout=1.0, scan_after_seq=run.state.last_seq
            )
        self._catch_up(run)
        return event_id in run.state.applied

    def _catch_up(self, run: _Run) -> None:
        """Applies every event the watch holds that the state has not seen yet."""
        state = run.state
        for held in run.watch.after(state.last_seq):
            state.last_seq = held.seq
            event = read_logged(state.run_id, held.data)
            if event is not None and event.run_id == state.run_id:
                state.first_seq = state.first_seq or held.seq
                state.apply(event)
