"""How a run ends, whoever ends it (its driver, the poison handler, the sweeper): exactly
one terminal event, then the work still running for it is told to stop and its slot is
given back.

Every terminal event of a run carries the same id, ``<run_id>:terminal``: the stream
keeps the first one stored, so two orchestrators (or a driver and the sweeper) that end
the same run at the same moment still record one ending.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
from prometheus_client import CollectorRegistry

from apex_contracts import (
    TERMINAL,
    ErrorInfo,
    RunCancelled,
    RunCancelledData,
    RunCancelRequested,
    RunCancelRequestedData,
    RunFailed,
    RunFailedData,
    Scope,
    ThreadEvent,
    subjects,
)
from apex_orchestrator.admission import Slot, UserSlots
from apex_orchestrator.metrics import OrchestratorMetrics, terminal_status
from apex_orchestrator.state import RunState, UnreadableEvent
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus, tracing

log = logging.getLogger(__name__)


def terminal_id(run_id: str) -> str:
    """One id for every terminal event of a run: the stream keeps only the first."""
    return f"{run_id}:terminal"


class RunEndings:
    def __init__(self, bus: Bus, slots: UserSlots, metrics: OrchestratorMetrics | None = None) -> None:
        self.bus = bus
        self.slots = slots
        self.metrics = metrics or OrchestratorMetrics(CollectorRegistry())

    async def end(self, event: ThreadEvent) -> None:
        """Records the terminal ``event`` (id ``<run>:terminal``), then stops the run's
        remaining work and frees its slot. The run's metrics and its root span are
        recorded here, by whoever ends the run."""
        await self.bus.publish_event(event)
        log.info("run %s ended: %s", event.run_id, event.type)
        self.metrics.run_ended(event)
        _trace_run(event)
        await self.settle(event.tenant_id, event.user_id, str(event.run_id))

    async def settle(self, tenant_id: str, user_id: str, run_id: str) -> None:
        """What follows an ending; safe to repeat (a redelivered command of an ended run)."""
        await self.stop_work(run_id)
        await self.slots.release(UserSlots.key(tenant_id, user_id), run_id)

    async def stop_work(self, run_id: str) -> None:
        """Broadcasts ``apex.ctl.cancel.<run>``: agents and tools interrupt what they
        still do for the run. Best effort: a worker that misses it sees the run's end in
        the log, and nothing it publishes afterwards can end the run a second time."""
        try:
            await self.bus.broadcast(subjects.cancel_broadcast(run_id), b"ended")
        except TRANSIENT_NATS_ERRORS as exc:
            log.warning("could not broadcast the end of run %s: %r", run_id, exc)

    async def fail(
        self,
        scope: Scope,
        run_id: str,
        error: ErrorInfo,
        *,
        duration_ms: int = 0,
        causation_id: str | None = None,
    ) -> None:
        await self.end(
            for_run(scope, run_id).make(
                RunFailed,
                RunFailedData(error=error, duration_ms=duration_ms),
                id=terminal_id(run_id),
                causation_id=causation_id,
            )
        )

    async def cancel(
        self, scope: Scope, run_id: str, cause: str, *, duration_ms: int = 0, causation_id: str | None = None
    ) -> None:
        await self.end(
            for_run(scope, run_id).make(
                RunCancelled,
                RunCancelledData(cause=cause, duration_ms=duration_ms),
                id=terminal_id(run_id),
                causation_id=causation_id,
            )
        )

    async def fail_unless_ended(
        self, scope: Scope, run_id: str, error: ErrorInfo, causation_id: str | None = None
    ) -> str | None:
        """Ends a run that nobody drives any more: ``run.cancelled`` when its cancellation
        was requested, else ``run.failed`` with ``error``. Returns the event type
        recorded, None when the run had already ended."""
        try:
            state = await fold_run(self.bus, scope, run_id)
        except UnreadableEvent:
            # the run's own events cannot be read (what made its command poison): end it
            # on what is known; its terminal id still allows only one ending
            await self.fail(scope, run_id, error, causation_id=causation_id)
            return "run.failed"
        if state.terminal:
            await self.settle(scope.tenant_id, scope.user_id, run_id)
            return None
        if state.cancel_cause:
            await self.cancel(scope, run_id, state.cancel_cause, causation_id=causation_id)
            return "run.cancelled"
        await self.fail(scope, run_id, error, causation_id=causation_id)
        return "run.failed"

    async def request_cancel(
        self, scope: Scope, run_id: str, *, cause: str, requested_by: str, causation_id: str | None = None
    ) -> bool:
        """Appends ``run.cancel_requested`` to the run's thread unless it already ended,
        and tells the run's workers at once. Returns False for an ended run."""
        if await run_ended(self.bus, scope, run_id):
            return False
        await self.bus.publish_event(
            for_run(scope, run_id).make(
                RunCancelRequested,
                RunCancelRequestedData(cause=cause, requested_by=requested_by),
                id=f"{run_id}:cancel_requested",
                causation_id=causation_id,
            )
        )
        await self.stop_work(run_id)
        return True

    async def slot_ended(self, tenant_id: str, user_id: str, slot: Slot) -> bool:
        scope = Scope(tenant_id=tenant_id, user_id=user_id, thread_id=slot.thread_id)
        return await run_ended(self.bus, scope, slot.run_id)


def _trace_run(event: ThreadEvent) -> None:
    """The run's root span, from its acceptance (the terminal event's duration) to now."""
    status, code = terminal_status(event)
    duration_ms = int(getattr(event.data, "duration_ms", 0) or 0)
    tracing.record_run(
        str(event.run_id),
        started=event.occurred_at - timedelta(milliseconds=duration_ms),
        ended=event.occurred_at,
        attributes={
            tracing.TENANT_ID: event.tenant_id,
            tracing.CONVERSATION_ID: event.thread_id,
            "apex.run.status": status,
        },
        error_code=code,
    )


def for_run(scope: Scope, run_id: str) -> Scope:
    """``scope`` stamping events of ``run_id`` (correlated by the run)."""
    if scope.run_id == run_id:
        return scope
    return scope.model_copy(update={"run_id": run_id, "correlation_id": run_id})


async def fold_run(bus: Bus, scope: Scope, run_id: str) -> RunState:
    """The run's state from its thread's log."""
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    history = [(seq, orjson.loads(data)) async for seq, data in bus.read_subject(subject)]
    return RunState.fold(run_id, history)


async def run_ended(bus: Bus, scope: Scope, run_id: str) -> bool:
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    async for _seq, data in bus.read_subject(subject):
        event = orjson.loads(data)
        if event.get("run_id") == run_id and event.get("type") in TERMINAL:
            return True
    return False
