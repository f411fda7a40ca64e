"""The Postgres projections: the history (threads, messages, runs, archive) from
APEX_EVT and the audit log from APEX_AUDIT.

Exactly-once argument: a batch, its derived rows and its checkpoint are written in one
transaction, so either all of it is in or none of it. The tracking record is the archive
row of each event (primary key = event id): derived rows are written only for events
whose archive insert succeeded in this transaction, so an event that comes back
(redelivery, crash between commit and ack, replay, any order) finds its archive row and
changes nothing. A single high-water mark would not do: a pull consumer hands out newer
messages while older ones wait for redelivery, and those would be skipped.

Erasure: a tombstone (``thread.deleted`` with ``erase``, ``user.erased``) is recorded in
the ledger ``apex.erasures`` and the subject's rows are deleted in the same transaction;
every event the ledger covers is dropped before it reaches the archive, whenever it comes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_contracts.audit import AuditEntry, audit_subject
from apex_persistence.postgres import coverage, erasures
from apex_persistence.postgres.changes import HistoryChanges, archive_row, history_changes
from apex_persistence.postgres.cursors import erase_cursors
from apex_persistence.postgres.db import PG_FAILURES, Database
from apex_persistence.postgres.statements import history_sql
from apex_persistence.postgres.tables import SCHEMA, audit_log, projection_checkpoints
from apex_persistence.projection.delivery import Decoded, Delivery, Projected, covers, decode, last_seq
from apex_persistence.projection.erasure import Erasure, per_target

log = logging.getLogger(__name__)


def writer_lock(name: str) -> str:
    """The advisory lock a projection's writers take (replicas, and a rebuild's swap)."""
    return f"apex_persistence.project.{name}"


async def _checkpoint(conn: AsyncConnection, name: str, seq: int) -> None:
    stmt = pg_insert(projection_checkpoints).values(name=name, last_seq=seq, updated_at=datetime.now(UTC))
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "last_seq": text("GREATEST(apex.projection_checkpoints.last_seq, EXCLUDED.last_seq)"),
                "updated_at": stmt.excluded.updated_at,
            },
        )
    )


async def _position(db: Database, name: str) -> int:
    async with db.writer() as conn:
        seq = await conn.scalar(
            select(projection_checkpoints.c.last_seq).where(projection_checkpoints.c.name == name)
        )
    return int(seq or 0)


class PostgresProjection:
    """Threads, messages, runs and the permanent event archive, in the view tables of
    ``schema`` (``apex``; a rebuild fills another schema, then swaps the tables in)."""

    failures = PG_FAILURES

    def __init__(self, db: Database, name: str = "postgres", schema: str = SCHEMA) -> None:
        self.db = db
        self.name = name
        self.sql = history_sql(schema)

    async def position(self) -> int:
        return await _position(self.db, self.name)

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        decoded = decode(batch)
        async with self.db.writer() as conn:
            # Replicas share the consumer, and a rebuild's swap takes the same lock: one
            # writer at a time keeps row locks simple and the swap clean.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": writer_lock(self.name)}
            )
            await self.apply_in(conn, decoded)
            if self.name == "postgres":  # the live archive records what it received of the log
                await coverage.record(conn, (delivery.seq for delivery in batch))
            await _checkpoint(conn, self.name, last_seq(batch))

    async def apply_in(self, conn: AsyncConnection, decoded: Decoded) -> None:
        """Applies a decoded batch inside the caller's transaction (no checkpoint)."""
        found = per_target(decoded.erasures)
        await erasures.record(conn, found)
        known = await erasures.covering(conn, decoded.events)
        live = decoded.without(known)
        if len(live) < len(decoded.events):
            await erasures.purge_again(conn, _late(known, decoded.events))
        fresh = await self._archive(conn, live)
        await self._write(conn, history_changes(p for p in live if p.event.id in fresh))
        if found:  # the gateway's cursors are not a view: they live in ``apex`` only
            await erase_cursors(conn, ((e.tenant_id, e.user_id, e.thread_id) for e in found))
        for erasure in found:
            await self._erase(conn, erasure)

    async def _archive(self, conn: AsyncConnection, projected: list[Projected]) -> set[str]:
        """Inserts archive rows; returns the ids that were not there before."""
        if not projected:
            return set()
        # One statement, compiled once and sent as batched multi-row inserts (insertmanyvalues);
        # RETURNING gives back only the rows that were inserted now.
        archive = self.sql.archive
        stmt = pg_insert(archive).on_conflict_do_nothing(index_elements=["id"]).returning(archive.c.id)
        result = await conn.execute(stmt, [archive_row(p) for p in projected])
        return set(result.scalars())

    async def _write(self, conn: AsyncConnection, changes: HistoryChanges) -> None:
        sql = self.sql
        for statement, rows in (
            (sql.touch_thread, changes.threads),
            (sql.set_title, changes.titles),
            (sql.add_message, changes.messages),
            (sql.upsert_run, changes.runs),
            (sql.delete_thread, changes.deletions),
        ):
            if rows:
                await conn.execute(statement, rows)

    async def _erase(self, conn: AsyncConnection, erasure: Erasure) -> None:
        params = {
            "tenant_id": erasure.tenant_id,
            "user_id": erasure.user_id,
            "thread_id": erasure.thread_id,
            "seq": erasure.seq,
            "runs": sorted(erasure.runs),
        }
        for statement in self.sql.erase_thread if erasure.kind == "thread" else self.sql.erase_user:
            await conn.execute(statement, params)
        if erasure.kind == "user":
            await erasures.delete_user_audit(conn, erasure)


def _late(known: Sequence[Erasure], events: Sequence[Projected]) -> list[Erasure]:
    """Erasures with covered events that reached the log after their purge could take
    them (a run the tombstone names that was still going): purged again."""
    return [e for e in known if any(p.seq > e.seq and covers([e], p) for p in events)]


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
            rows = await _without_erased_actors(conn, rows)
            if rows:
                await conn.execute(pg_insert(audit_log).on_conflict_do_nothing(index_elements=["id"]), rows)
            await _checkpoint(conn, self.name, last_seq(batch))


async def _without_erased_actors(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An erased user's entries are not kept (the record of the erasure itself is)."""
    actors = {
        (r["tenant_id"], r["actor_user_id"])
        for r in rows
        if r["actor_user_id"] and r["action"] != "data.erased"
    }
    erased = await erasures.erased_users(conn, actors)
    if erased:  # and the eraser removes them from the audit stream too
        await erasures.purge_users_again(conn, erased)
    return [
        r for r in rows if r["action"] == "data.erased" or (r["tenant_id"], r["actor_user_id"]) not in erased
    ]


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
