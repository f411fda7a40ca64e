"""The Postgres projections: the history (threads, messages, runs, archive) from
APEX_EVT and the audit log from APEX_AUDIT.

Exactly-once argument: a batch, its derived rows and its checkpoint are written in one
transaction, so either all of it is in or none of it. The tracking record is the archive
row of each event (primary key = event id): derived rows are written only for events
whose archive insert succeeded in this transaction, so an event that comes back
(redelivery, crash between commit and ack, replay, any order) finds its archive row and
changes nothing. A single high-water mark would not do: a pull consumer hands out newer
messages while older ones wait for redelivery, and those would be skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_contracts.audit import AuditEntry, audit_subject
from apex_persistence.postgres.changes import HistoryChanges, archive_row, history_changes
from apex_persistence.postgres.db import PG_FAILURES, Database
from apex_persistence.postgres.tables import audit_log, events, projection_checkpoints
from apex_persistence.projection.delivery import Delivery, Projected, decode_events, last_seq

log = logging.getLogger(__name__)
_CHUNK: Final = 1000

_TOUCH_THREAD = text("""
    INSERT INTO apex.threads AS t (id, tenant_id, user_id, title, created_at, updated_at)
    VALUES (:id, :tenant_id, :user_id, '', :created_at, :updated_at)
    ON CONFLICT (id) DO UPDATE SET
        created_at = LEAST(t.created_at, EXCLUDED.created_at),
        updated_at = GREATEST(t.updated_at, EXCLUDED.updated_at)
    WHERE t.tenant_id = EXCLUDED.tenant_id
""")
_SET_TITLE = text("""
    UPDATE apex.threads SET title = :title, title_seq = :seq, title_source = :source
    WHERE id = :id AND (
        title_source IS NULL
        OR (:source = 'rename' AND (title_source = 'message' OR title_seq < :seq))
        OR (:source = 'message' AND title_source = 'message' AND title_seq > :seq))
""")
_ADD_MESSAGE = text("""
    INSERT INTO apex.messages (id, tenant_id, thread_id, role, content, run_id, seq, created_at)
    VALUES (:id, :tenant_id, :thread_id, :role, :content, :run_id, :seq, :created_at)
    ON CONFLICT (id) DO NOTHING
""")
_UPSERT_RUN = text("""
    INSERT INTO apex.runs AS r (id, tenant_id, user_id, thread_id, status, status_seq, started_at,
        ended_at, duration_ms, error_code, tool_calls, llm_tokens, reported_tokens, llm_cost_usd,
        updated_at)
    VALUES (:id, :tenant_id, :user_id, :thread_id, :status, :status_seq, :at, :ended_at,
        :duration_ms, :error_code, :tool_calls, :llm_tokens, :reported_tokens, :llm_cost_usd, :at)
    ON CONFLICT (id) DO UPDATE SET
        status = CASE
            WHEN r.status IN ('completed', 'needs_data', 'failed', 'cancelled')
                OR EXCLUDED.status_seq <= r.status_seq THEN r.status
            ELSE EXCLUDED.status END,
        status_seq = GREATEST(r.status_seq, EXCLUDED.status_seq),
        started_at = LEAST(r.started_at, EXCLUDED.started_at),
        ended_at = COALESCE(r.ended_at, EXCLUDED.ended_at),
        duration_ms = COALESCE(r.duration_ms, EXCLUDED.duration_ms),
        error_code = COALESCE(r.error_code, EXCLUDED.error_code),
        tool_calls = r.tool_calls + EXCLUDED.tool_calls,
        llm_tokens = r.llm_tokens + EXCLUDED.llm_tokens,
        reported_tokens = COALESCE(EXCLUDED.reported_tokens, r.reported_tokens),
        llm_cost_usd = COALESCE(EXCLUDED.llm_cost_usd, r.llm_cost_usd),
        updated_at = GREATEST(r.updated_at, EXCLUDED.updated_at)
    WHERE r.tenant_id = EXCLUDED.tenant_id
""")
_DELETE_THREAD = text("""
    UPDATE apex.threads SET
        deleted_at = COALESCE(deleted_at, :at),
        erased_at = CASE WHEN :erase THEN COALESCE(erased_at, :at) ELSE erased_at END,
        title = CASE WHEN :erase THEN '' ELSE title END
    WHERE id = :id
""")
_ERASE = tuple(
    text(f"DELETE FROM apex.{table} WHERE thread_id = :id") for table in ("messages", "runs", "events")
)
_ERASED = text("SELECT id FROM apex.threads WHERE id = ANY(:ids) AND erased_at IS NOT NULL")


async def _checkpoint(conn: AsyncConnection, name: str, seq: int) -> None:
    stmt = pg_insert(projection_checkpoints).values(name=name, last_seq=seq, updated_at=datetime.now(UTC))
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "last_seq": text("GREATEST(apex.projection_checkpoints.last_seq, EXCLUDED.last_seq)"),
            "updated_at": stmt.excluded.updated_at,
        },
    ))


async def _position(db: Database, name: str) -> int:
    async with db.writer() as conn:
        seq = await conn.scalar(
            select(projection_checkpoints.c.last_seq).where(projection_checkpoints.c.name == name)
        )
    return int(seq or 0)


class PostgresProjection:
    """Threads, messages, runs and the permanent event archive."""

    failures = PG_FAILURES

    def __init__(self, db: Database, name: str = "postgres") -> None:
        self.db = db
        self.name = name

    async def position(self) -> int:
        return await _position(self.db, self.name)

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        projected = decode_events(batch)
        async with self.db.writer() as conn:
            # Replicas share the consumer; one writer at a time keeps row locks simple.
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                               {"name": f"apex_persistence.project.{self.name}"})
            live = await self._without_erased(conn, projected)
            fresh = await self._archive(conn, live)
            await self._write(conn, history_changes(p for p in live if p.event.id in fresh))
            await _checkpoint(conn, self.name, last_seq(batch))

    async def _without_erased(self, conn: AsyncConnection, projected: list[Projected]) -> list[Projected]:
        threads = sorted({p.event.thread_id for p in projected})
        if not threads:
            return []
        erased = set((await conn.execute(_ERASED, {"ids": threads})).scalars())
        return [p for p in projected if p.event.thread_id not in erased]

    async def _archive(self, conn: AsyncConnection, projected: list[Projected]) -> set[str]:
        """Inserts archive rows; returns the ids that were not there before."""
        fresh: set[str] = set()
        rows = [archive_row(p) for p in projected]
        for start in range(0, len(rows), _CHUNK):
            stmt = pg_insert(events).values(rows[start:start + _CHUNK])
            result = await conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id))
            fresh.update(result.scalars())
        return fresh

    async def _write(self, conn: AsyncConnection, changes: HistoryChanges) -> None:
        for statement, rows in (
            (_TOUCH_THREAD, changes.threads),
            (_SET_TITLE, changes.titles),
            (_ADD_MESSAGE, changes.messages),
            (_UPSERT_RUN, changes.runs),
            (_DELETE_THREAD, changes.deletions),
        ):
            if rows:
                await conn.execute(statement, rows)
        for deletion in changes.deletions:
            if deletion["erase"]:
                for erase in _ERASE:
                    await conn.execute(erase, {"id": deletion["id"]})


class AuditProjection:
    """The append-only audit log, from APEX_AUDIT; exact by entry id (primary key)."""

    failures = PG_FAILURES

    def __init__(self, db: Database, name: str = "audit") -> None:
        self.db = db
        self.name = name

    async def position(self) -> int:
        return await _position(self.db, self.name)

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        rows = [row for delivery in batch if (row := _audit_row(delivery)) is not None]
        async with self.db.writer() as conn:
            if rows:
                await conn.execute(pg_insert(audit_log).values(rows).on_conflict_do_nothing(index_elements=["id"]))
            await _checkpoint(conn, self.name, last_seq(batch))


def _audit_row(delivery: Delivery) -> dict[str, Any] | None:
    try:
        entry = AuditEntry.model_validate(orjson.loads(delivery.data))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        log.warning("skipping audit seq %d: not an audit entry (%s)", delivery.seq, exc)
        return None
    if delivery.subject != audit_subject(entry.tenant_id):
        log.warning("skipping audit seq %d: tenant does not match %s", delivery.seq, delivery.subject)
        return None
    return {"seq": delivery.seq, **entry.model_dump(mode="python")}
