"""The orchestrator's command handlers: small, each with the ports it needs."""

from __future__ import annotations

import logging

import orjson
from faststream.nats import NatsMessage, NatsRouter
from pydantic import ValidationError

from apex_contracts import ErrorInfo, RunCancel, RunStart, Scope, parse_command
from apex_contracts.streams import RUN_CANCEL_CONSUMER, RUN_START_CONSUMER, ConsumerSpec
from apex_orchestrator.driver import RunDriver
from apex_orchestrator.endings import RunEndings, run_ended
from apex_orchestrator.metrics import OrchestratorMetrics
from apex_runtime import InboundMessage, subscribe_command
from apex_runtime.consumers import PoisonHandler

log = logging.getLogger(__name__)


def build_router(
    driver: RunDriver, endings: RunEndings, max_runs: int, run_start: ConsumerSpec = RUN_START_CONSUMER
) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        run_start,
        max_workers=max_runs,
        title="run.start",
        description="Drives a run to exactly one terminal event; acked only then.",
    )
    async def on_run_start(command: RunStart, msg: InboundMessage) -> None:
        _count_redelivery(driver.metrics, "run.start", msg)
        await driver.drive(command, keepalive=msg.in_progress)
        await msg.ack()

    @subscribe_command(
        router,
        RUN_CANCEL_CONSUMER,
        max_workers=16,
        title="run.cancel",
        description="Records the cancellation in the run's thread and interrupts its workers.",
    )
    async def on_run_cancel(command: RunCancel, msg: InboundMessage) -> None:
        _count_redelivery(driver.metrics, "run.cancel", msg)
        await endings.request_cancel(
            Scope.of(command),
            str(command.run_id),
            cause=command.data.cause,
            requested_by=command.data.requested_by,
            causation_id=command.id,
        )
        await msg.ack()

    return router


def _count_redelivery(metrics: OrchestratorMetrics, command: str, msg: NatsMessage) -> None:
    if msg.raw_message.metadata.num_delivered > 1:
        metrics.redeliveries.labels(command).inc()


def poison_handler(endings: RunEndings) -> PoisonHandler:
    """Ends the run of a command that failed on every delivery: ``run.failed`` with the
    error (``run.cancelled`` when its cancellation was requested), its slot freed."""

    async def on_poison(raw: bytes, error: ErrorInfo) -> None:
        try:
            command = parse_command(raw)
        except (ValidationError, orjson.JSONDecodeError):
            log.error("dead-lettered an unreadable command; no run to end")
            return
        if command.thread_id is None or command.user_id is None or command.run_id is None:
            return
        if isinstance(command, RunCancel):
            # the cancellation could not be recorded: end the run as the user asked
            if not await run_ended(endings.bus, Scope.of(command), str(command.run_id)):
                await endings.cancel(
                    Scope.of(command), str(command.run_id), command.data.cause, causation_id=command.id
                )
            return
        await endings.fail_unless_ended(
            Scope.of(command), str(command.run_id), error, causation_id=command.id
        )

    return on_poison
