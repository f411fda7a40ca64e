"""The orchestrator's command handlers: small, each with the ports it needs."""

from __future__ import annotations

import logging

import orjson
from faststream.nats import NatsMessage, NatsRouter
from pydantic import ValidationError

from apex_contracts import (
    TERMINAL,
    ErrorInfo,
    RunCancel,
    RunCancelRequested,
    RunCancelRequestedData,
    RunFailed,
    RunFailedData,
    RunStart,
    Scope,
    parse_command,
    subjects,
)
from apex_contracts.streams import RUN_CANCEL_CONSUMER, RUN_START_CONSUMER
from apex_orchestrator.driver import RunDriver, terminal_id
from apex_runtime import Bus, subscribe_command

log = logging.getLogger(__name__)


def build_router(driver: RunDriver, bus: Bus, max_runs: int) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        RUN_START_CONSUMER,
        max_workers=max_runs,
        title="run.start",
        description="Drives a run to exactly one terminal event; acked only then.",
    )
    async def on_run_start(command: RunStart, msg: NatsMessage) -> None:
        await driver.drive(command, keepalive=msg.in_progress)
        await msg.ack()

    @subscribe_command(
        router,
        RUN_CANCEL_CONSUMER,
        max_workers=16,
        title="run.cancel",
        description="Records the cancellation in the run's thread and interrupts its workers.",
    )
    async def on_run_cancel(command: RunCancel, msg: NatsMessage) -> None:
        await request_cancel(bus, command)
        await msg.ack()

    return router


async def request_cancel(bus: Bus, command: RunCancel) -> None:
    """Appends ``run.cancel_requested`` unless the run already ended; the run's driver
    turns it into ``run.cancelled`` and workers stop at the broadcast."""
    scope = Scope.of(command)
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    async for _seq, data in bus.read_subject(subject):
        event = orjson.loads(data)
        if event.get("run_id") == command.run_id and event.get("type") in TERMINAL:
            return
    await bus.publish_event(scope.make(
        RunCancelRequested,
        RunCancelRequestedData(cause=command.data.cause, requested_by=command.data.requested_by),
        id=f"{command.run_id}:cancel_requested",
        causation_id=command.id,
    ))
    await bus.nc.publish(subjects.cancel_broadcast(command.run_id), command.data.cause.encode())


def poison_handler(bus: Bus):  # type: ignore[no-untyped-def]
    """Ends the run of a command that failed on every delivery with ``run.failed``."""

    async def on_poison(raw: bytes, error: ErrorInfo) -> None:
        try:
            command = parse_command(raw)
        except (ValidationError, orjson.JSONDecodeError):
            log.error("dead-lettered an unreadable command; no run to fail")
            return
        if command.thread_id is None or command.user_id is None or command.run_id is None:
            return
        await bus.publish_event(Scope.of(command).make(
            RunFailed, RunFailedData(error=error), id=terminal_id(command.run_id),
            causation_id=command.id,
        ))

    return on_poison
