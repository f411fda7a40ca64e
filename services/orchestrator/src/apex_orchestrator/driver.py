"""Drives one run from its ``run.start`` command to exactly one terminal event.

The loop is: read the run's events from the log, fold them into ``RunState``, ask the
policy what to do next, do it (publish an event or an ``agent.step`` command), wait for
the log to move, repeat. Nothing is kept anywhere else, so a replacement orchestrator
that gets the redelivered command resumes exactly where this one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson

from apex_contracts import (
    AgentStep,
    AgentStepData,
    RunAccepted,
    RunAcceptedData,
    RunCancelled,
    RunCancelledData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    RunStart,
    RunUsage,
    Scope,
    ThreadEvent,
    subjects,
    utcnow,
)
from apex_contracts.errors import ErrorCode
from apex_orchestrator.policy import (
    Accept,
    Cancel,
    Complete,
    Done,
    Fail,
    RunLimits,
    RunStep,
    error,
    next_action,
)
from apex_orchestrator.state import RunState
from apex_runtime import Bus, SubjectWatch, keep_alive, log_context

log = logging.getLogger(__name__)
Keepalive = Callable[[], Awaitable[None]]
_WAKE_TYPES = frozenset({"agent_completed", "agent_failed", "run.cancel_requested"})


def terminal_id(run_id: str) -> str:
    """One id for every terminal event of a run: the stream keeps only the first."""
    return f"{run_id}:terminal"


class RunDriver:
    def __init__(self, bus: Bus, limits: RunLimits, *, keepalive_every_s: float = 3.0) -> None:
        self.bus = bus
        self.limits = limits
        self.keepalive_every_s = keepalive_every_s

    async def drive(self, command: RunStart, keepalive: Keepalive) -> None:
        scope = Scope.of(command)
        subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
        with log_context(tenant_id=scope.tenant_id, run_id=command.run_id, thread_id=scope.thread_id):
            async with self.bus.watch(subject) as watch, keep_alive(keepalive, self.keepalive_every_s):
                history = [
                    (seq, orjson.loads(data)) async for seq, data in self.bus.read_subject(subject)
                ]
                state = RunState.fold(command.run_id, history)
                await self._loop(command, scope, subject, state, watch)

    async def _loop(
        self, command: RunStart, scope: Scope, subject: str, state: RunState, watch: SubjectWatch
    ) -> None:
        while True:
            action = next_action(state, self.limits, utcnow())
            match action:
                case Done():
                    return
                case Accept():
                    await self.bus.publish_event(scope.make(
                        RunAccepted,
                        RunAcceptedData(message_id=command.data.message_id, question=command.data.text),
                        id=f"{command.run_id}:accepted",
                        causation_id=command.id,
                    ))
                    await self._catch_up(subject, state)
                case RunStep(step=step, agent=agent):
                    await self._run_step(command, scope, subject, state, watch, step, agent)
                case Complete(output=output):
                    await self._finish(state, scope.make(RunCompleted, RunCompletedData(
                        status=output.status,
                        response=output.response,
                        duration_ms=self._elapsed_ms(state),
                        usage=RunUsage(tool_calls=state.tool_calls, llm_tokens=state.llm_tokens),
                    ), id=terminal_id(command.run_id)))
                    return
                case Fail(error=info):
                    await self._finish(state, scope.make(
                        RunFailed, RunFailedData(error=info, duration_ms=self._elapsed_ms(state)),
                        id=terminal_id(command.run_id),
                    ))
                    return
                case Cancel(cause=cause):
                    await self._finish(state, scope.make(
                        RunCancelled, RunCancelledData(cause=cause, duration_ms=self._elapsed_ms(state)),
                        id=terminal_id(command.run_id),
                    ))
                    return

    async def _run_step(
        self,
        command: RunStart,
        scope: Scope,
        subject: str,
        state: RunState,
        watch: SubjectWatch,
        step: int,
        agent: str,
    ) -> None:
        step_command = scope.make(
            AgentStep,
            AgentStepData(
                agent=agent,  # type: ignore[arg-type]
                step=step,
                question=command.data.text,
                inputs=state.inputs(),
                history=[{"question": t.question, "answer": t.answer} for t in state.history[-5:]],
                budget_tool_calls=max(0, self.limits.max_tool_calls - state.tool_calls),
                deadline_ms=int(self.limits.step_timeout_s * 1000),
            ),
            id=f"{command.run_id}:{step}:agent.step",
            agent=agent,  # type: ignore[arg-type]
            causation_id=command.id,
        )
        await self.bus.publish(step_command, subjects.CMD_AGENT_STEP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.step_timeout_s
        unconfirmed: set[str] = set()
        while True:
            await self._catch_up(subject, state)
            current = state.steps.get(step)
            if (current and current.done) or state.cancel_cause or state.terminal:
                return
            if next_action(state, self.limits, utcnow()) != RunStep(step, agent):  # type: ignore[arg-type]
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self._finish(state, scope.make(RunFailed, RunFailedData(
                    error=error(
                        ErrorCode.STEP_TIMEOUT,
                        f"The {agent} agent did not finish within {self.limits.step_timeout_s:.0f} s.",
                    ),
                    duration_ms=self._elapsed_ms(state),
                ), id=terminal_id(command.run_id)))
                return
            try:
                woke = await watch.wait_for(
                    lambda e: e.get("run_id") == command.run_id and e.get("type") in _WAKE_TYPES
                    and e.get("id") not in state.applied and e.get("id") not in unconfirmed,
                    timeout=min(remaining, 5.0),
                    scan_after_seq=None,
                )
            except TimeoutError:
                continue
            if not await self._until_logged(subject, state, woke["id"]):
                unconfirmed.add(woke["id"])

    async def _until_logged(self, subject: str, state: RunState, event_id: str) -> bool:
        """A live message can arrive before the stream has stored it: reads the log again,
        briefly, until the event is there. The log, not the live message, is the truth."""
        for delay in (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5):
            if delay:
                await asyncio.sleep(delay)
            await self._catch_up(subject, state)
            if event_id in state.applied:
                return True
        return False

    async def _catch_up(self, subject: str, state: RunState) -> None:
        """Applies every event appended to the thread since the state was last updated."""
        async for seq, data in self.bus.read_subject(subject, after_seq=state.last_seq):
            state.last_seq = max(state.last_seq, seq)
            event = orjson.loads(data)
            if event.get("run_id") == state.run_id:
                state.apply(event)

    async def _finish(self, state: RunState, event: ThreadEvent) -> None:
        await self.bus.publish_event(event)
        state.terminal = event.type
        log.info("run %s ended: %s", state.run_id, event.type)

    @staticmethod
    def _elapsed_ms(state: RunState) -> int:
        if state.accepted_at is None:
            return 0
        return max(0, int((utcnow() - state.accepted_at).total_seconds() * 1000))

