"""Audit facts: written to ``auth.audit_outbox`` in the transaction of the action they
describe, then relayed to ``apex.audit.<tenant>`` (stream ``APEX_AUDIT``).

A fact is therefore recorded if and only if its action committed, and reaches the
stream at least once: the relay marks a row sent only after JetStream acknowledged it,
and sends the entry id as ``Nats-Msg-Id`` so a resend inside the duplicate window is
dropped by the server (and the projector is keyed by entry id beyond it).

Facts without a tenant (``auth.key_rotated``) stay in the outbox as the service's own
record; no tenant is invented to publish them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apex_auth import metrics
from apex_auth.db import STORE_FAILURES
from apex_auth.tables import audit_outbox
from apex_contracts import Unavailable, new_id, utcnow
from apex_contracts.audit import AuditAction, AuditEntry, audit_subject
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus

log = logging.getLogger(__name__)

SERVICE = "auth"
NATS_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_NATS_ERRORS, nats.errors.Error)
# what a relay round stops on: the bus is down, or its retries ran out (Unavailable)
_RELAY_STOPPED: tuple[type[BaseException], ...] = (*NATS_ERRORS, Unavailable)
RELAY_FAILURES: tuple[type[BaseException], ...] = (*NATS_ERRORS, *STORE_FAILURES)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: AuditAction
    outcome: str
    tenant_id: str | None
    actor_user_id: str | None = None
    session_id: str | None = None
    source_ip: str | None = None
    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def record(conn: AsyncConnection, fact: AuditRecord) -> str:
    """Adds ``fact`` to the outbox inside the caller's transaction; returns its id."""
    entry_id = new_id("evt")
    fields: dict[str, Any] = {
        "id": entry_id,
        "action": fact.action,
        "outcome": fact.outcome,
        "at": utcnow(),
        "actor_user_id": fact.actor_user_id,
        "session_id": fact.session_id,
        "source_ip": fact.source_ip,
        "service": SERVICE,
        "target": fact.target,
        "details": fact.details,
    }
    if fact.tenant_id is not None:
        entry = AuditEntry.model_validate({**fields, "tenant_id": fact.tenant_id})
        payload = entry.model_dump(mode="json")
    else:
        payload = {**fields, "at": fields["at"].isoformat(), "tenant_id": None}
    await conn.execute(
        insert(audit_outbox).values(
            id=entry_id, tenant_id=fact.tenant_id, entry=payload, created_at=fields["at"]
        )
    )
    metrics.AUDIT_RECORDED.labels(fact.action, fact.outcome).inc()
    return str(entry_id)


class AuditRelay:
    """Publishes unsent tenant rows of the outbox to JetStream, oldest first.

    ``run`` never gives up: when NATS or Postgres is away it backs off (up to
    ``max_backoff_s``) and tries again; rows stay unsent until JetStream acknowledged
    them. Replicas share the work with ``FOR UPDATE SKIP LOCKED``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        bus: Bus,
        *,
        batch: int = 100,
        poll_s: float = 1.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self._batch = batch
        self._poll_s = poll_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Asks the relay to look at the outbox now rather than at its next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.0
        while not stop.is_set():
            try:
                sent = await self.publish_pending()
            except RELAY_FAILURES as exc:
                backoff = min(max(backoff * 2, 0.1), self._max_backoff_s)
                metrics.AUDIT_RELAY_FAILURES.inc()
                log.warning("audit relay: retrying in %.1fs after %r", backoff, exc)
                await _sleep_or_stop(stop, backoff * random.uniform(0.8, 1.2))
                continue
            backoff = 0.0
            if sent < self._batch:
                await self._idle(stop)

    async def publish_pending(self) -> int:
        """Publishes one batch; returns how many rows it marked sent."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(
                        audit_outbox.c.seq, audit_outbox.c.id, audit_outbox.c.tenant_id, audit_outbox.c.entry
                    )
                    .where(audit_outbox.c.sent_at.is_(None), audit_outbox.c.tenant_id.is_not(None))
                    .order_by(audit_outbox.c.seq)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            sent: list[int] = []
            failure: BaseException | None = None
            for row in rows:
                try:
                    await self._publish(row.id, row.tenant_id, row.entry)
                except _RELAY_STOPPED as exc:
                    failure = exc
                    break
                sent.append(row.seq)
            if sent:
                await conn.execute(
                    update(audit_outbox).where(audit_outbox.c.seq.in_(sent)).values(sent_at=utcnow())
                )
                metrics.AUDIT_PUBLISHED.inc(len(sent))
        if failure is not None:
            raise failure
        return len(sent)

    async def _publish(self, entry_id: str, tenant_id: str, entry: dict[str, Any]) -> None:
        payload = AuditEntry.model_validate(entry).model_dump_json().encode()
        await self._bus.publish_raw(audit_subject(tenant_id), payload, {"Nats-Msg-Id": entry_id})

    async def _idle(self, stop: asyncio.Event) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({wake, halt}, timeout=self._poll_s, return_when="FIRST_COMPLETED")
        finally:
            for task in (wake, halt):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wake.clear()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
