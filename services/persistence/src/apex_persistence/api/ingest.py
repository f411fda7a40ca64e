"""The usage ingest consumer: ``apex.cmd.usage.ingest.<tenant>`` into ``llm_usage``, acked
only after the insert (the ingest service reads a tenant's batches not yet acked as
committed, so the ack must mean stored). While ClickHouse is unavailable the handler keeps the command (with
in-progress acks) and retries with a backoff, so a short outage is a delay; a longer
one hands the command back to the poison guard, which redelivers it later."""

from __future__ import annotations

import logging
from typing import cast

import stamina
from faststream.nats import NatsRouter

from apex_contracts import ErrorCode, InvalidInput, Unavailable, UsageIngest, subjects
from apex_contracts.streams import USAGE_INGEST_CONSUMER
from apex_persistence.analytics.usage import UsageLedger
from apex_runtime import CircuitBreaker, CircuitOpen, InboundMessage, keep_alive, subscribe_command, undecoded

log = logging.getLogger(__name__)


class UsageIngestHandler:
    def __init__(self, ledger: UsageLedger, breaker: CircuitBreaker, *, patience_s: float = 120.0) -> None:
        self.ledger = ledger
        self.breaker = breaker
        self.patience_s = patience_s

    async def handle(self, command: UsageIngest) -> int:
        """Inserts the command's records; raises Unavailable(store_unavailable) when the
        store stayed unavailable for ``patience_s``."""
        # the store's failures are driver exceptions (Exception subclasses, as stamina needs)
        unavailable = cast(tuple[type[Exception], ...], (CircuitOpen, *self.ledger.failures))

        async def store() -> int:
            try:
                return await self.breaker.call(
                    lambda: self.ledger.ingest(command.tenant_id, command.data.batch()), self.ledger.failures
                )
            except unavailable as exc:
                log.warning("usage batch %s waits for ClickHouse: %r", command.data.batch_id, exc)
                raise

        # Bounded by time, not by count: the command is kept (in-progress acks) for up to
        # ``patience_s``, retried with jittered exponential backoff (0.2 s doubling to 5 s).
        retrying = stamina.AsyncRetryingCaller(
            attempts=None, timeout=self.patience_s, wait_initial=0.2, wait_max=5.0, wait_jitter=0.1
        )
        try:
            return await retrying(unavailable, store)
        except unavailable as exc:
            raise Unavailable(
                f"usage batch {command.data.batch_id} not stored: {exc!r}",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc


def build_ingest_router(handler: UsageIngestHandler, max_workers: int = 2) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        USAGE_INGEST_CONSUMER,
        max_workers=max_workers,
        title="usage ingest",
        description="Stores a batch of usage records in llm_usage for the command's tenant (subject: its tenant)",
        decoder=undecoded,
    )
    async def ingest_usage(msg: InboundMessage) -> None:
        command = UsageIngest.model_validate_json(msg.body)
        if msg.raw_message.subject != subjects.usage_ingest(command.tenant_id):
            raise InvalidInput(f"usage batch {command.data.batch_id} is on another tenant's subject")
        async with keep_alive(msg.raw_message.in_progress, every_s=USAGE_INGEST_CONSUMER.ack_wait_s / 3):
            stored = await handler.handle(command)
        await msg.ack()
        log.info("usage batch %s: %d rows for %s", command.data.batch_id, stored, command.tenant_id)

    return router
