"""Retention per store: what is older than the store's window goes, on a schedule.

Postgres keeps a thread whole while it is active: a thread whose last event is older
than ``APEX_RETENTION_POSTGRES_DAYS`` goes with its messages, runs and archive rows.
ClickHouse drops events older than ``APEX_RETENTION_CLICKHOUSE_DAYS`` and usage rows
older than ``APEX_RETENTION_USAGE_DAYS``; the audit log entries older than
``APEX_RETENTION_AUDIT_DAYS``. Redis's window is the TTL of its keys
(``APEX_REDIS_TTL_S``). 0 days keeps everything. A rebuild applies the same windows to
its fresh set before swapping it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Final

from sqlalchemy import text

from apex_contracts import Unavailable
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.rows import ch_time
from apex_persistence.analytics.versions import Versions, usage_key
from apex_persistence.postgres.db import PG_FAILURES, Database
from apex_persistence.postgres.projector import writer_lock
from apex_persistence.postgres.tables import SCHEMA, schema_name
from apex_persistence.settings import Retention
from apex_runtime import CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)
_CHUNK: Final = 500
# Postgres down or its breaker open: the sweep waits for the next round (one name, because
# mypy cannot type an unpacking inside ``except (...)``).
_PG_DOWN: Final[tuple[type[BaseException], ...]] = (CircuitOpen, *PG_FAILURES)


async def sweep_postgres(
    db: Database, cutoff: datetime, *, schema: str = SCHEMA, lock: str = "postgres"
) -> int:
    """Deletes the threads whose last event is older than ``cutoff``, with their
    messages, runs and archive rows; returns the number of threads."""
    s = schema_name(schema)
    gone = 0
    while True:
        async with db.writer() as conn:
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": writer_lock(lock)}
            )
            ids = list(
                (
                    await conn.execute(
                        text(
                            f"SELECT id FROM {s}.threads WHERE updated_at < :cutoff ORDER BY updated_at LIMIT {_CHUNK}"
                        ),
                        {"cutoff": cutoff},
                    )
                ).scalars()
            )
            for table in ("messages", "runs", "events"):
                await conn.execute(text(f"DELETE FROM {s}.{table} WHERE thread_id = ANY(:ids)"), {"ids": ids})
            await conn.execute(text(f"DELETE FROM {s}.threads WHERE id = ANY(:ids)"), {"ids": ids})
        gone += len(ids)
        if len(ids) < _CHUNK:
            return gone


async def sweep_audit(db: Database, cutoff: datetime) -> None:
    async with db.writer() as conn:
        # the audit log is not the writer's to change: the one function that expires entries
        await conn.execute(text("SELECT apex.audit_expire(:cutoff)"), {"cutoff": cutoff})


async def sweep_clickhouse(
    store: AnalyticsStore, events: datetime | None, usage: datetime | None
) -> set[str]:
    """Deletes what is older than each cutoff; returns the tenants whose usage rows went."""
    if events is not None:
        await store.command(
            "DELETE FROM $db.events WHERE occurred_at < {cutoff:DateTime64(3, 'UTC')}",
            {"cutoff": ch_time(events)},
        )
    if usage is None:
        return set()
    older = {"cutoff": ch_time(usage)}
    rows = await store.select(
        "SELECT DISTINCT tenant_id FROM $db.llm_usage WHERE ts < {cutoff:DateTime64(3, 'UTC')}", older
    )
    await store.command("DELETE FROM $db.llm_usage WHERE ts < {cutoff:DateTime64(3, 'UTC')}", older)
    return {str(row["tenant_id"]) for row in rows}


class RetentionSweeper:
    """Applies the retention of every store every ``every_s``; a store that is down is
    swept at the next round. The tenants whose usage rows went get a new usage version
    (``analytics/versions.py``); a version the bus could not take is bumped next round."""

    def __init__(
        self,
        retention: Retention,
        db: Database,
        analytics: AnalyticsStore,
        breakers: dict[str, CircuitBreaker],
        *,
        every_s: float = 3600.0,
        versions: Versions | None = None,
    ) -> None:
        self.retention = retention
        self.db = db
        self.analytics = analytics
        self.breakers = breakers
        self.every_s = every_s
        self.versions = versions
        self.unbumped: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def sweep(self, now: datetime | None = None) -> None:
        r = self.retention
        threads, audit = Retention.cutoff(r.postgres_days, now), Retention.cutoff(r.audit_days, now)
        events, usage = Retention.cutoff(r.clickhouse_days, now), Retention.cutoff(r.usage_days, now)
        try:
            if threads is not None:
                gone = await self.breakers["postgres"].call(
                    lambda: sweep_postgres(self.db, threads), PG_FAILURES
                )
                log.info("retention: %d threads older than %s removed", gone, threads.date())
            if audit is not None:
                await self.breakers["postgres"].call(lambda: sweep_audit(self.db, audit), PG_FAILURES)
        except _PG_DOWN as exc:
            log.warning("retention: Postgres unavailable, next round: %r", exc)
        failures = self.analytics.failures
        clickhouse_down: tuple[type[BaseException], ...] = (CircuitOpen, *failures)
        try:
            if events is not None or usage is not None:
                self.unbumped |= await self.breakers["clickhouse"].call(
                    lambda: sweep_clickhouse(self.analytics, events, usage), failures
                )
        except clickhouse_down as exc:
            log.warning("retention: ClickHouse unavailable, next round: %r", exc)
        await self._bump_versions()

    async def _bump_versions(self) -> None:
        if self.versions is None:
            self.unbumped.clear()
            return
        for tenant_id in sorted(self.unbumped):
            try:
                await self.versions.bump(usage_key(tenant_id))
            except Unavailable as exc:
                log.warning("retention: usage versions not bumped, next round: %s", exc.message)
                return
            self.unbumped.discard(tenant_id)
