"""Delivery cursors (``apex.delivery_cursors``): the highest seq a user acknowledged on a
thread, flushed by the gateways from Redis so that a lost Redis key is not a full replay.

A cursor only ever moves forward (the upsert only raises ``seq``), so flushes may
repeat, overlap and arrive in any order. No cursor is stored for an erased user or
thread (the ledger says so), and a flush and an erasure of the same user take turns on
an advisory lock: either the erasure deletes what the flush wrote, or the flush sees the
ledger row and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_contracts.queries import CursorFlush, CursorGet, CursorPosition, CursorsStored
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.tables import delivery_cursors

# One statement per flush; the entries are distinct (user, thread) pairs.
_UPSERT = text("""
    INSERT INTO apex.delivery_cursors AS c (tenant_id, user_id, thread_id, seq, updated_at)
    SELECT :tenant_id, x.user_id, x.thread_id, x.seq, :at
    FROM unnest(CAST(:users AS text[]), CAST(:threads AS text[]), CAST(:seqs AS bigint[]))
        AS x(user_id, thread_id, seq)
    WHERE NOT EXISTS (
        SELECT 1 FROM apex.erasures e
        WHERE e.tenant_id = :tenant_id AND e.target IN ('user:' || x.user_id, 'thread:' || x.thread_id))
    ON CONFLICT (tenant_id, user_id, thread_id) DO UPDATE
    SET seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at
    WHERE EXCLUDED.seq > c.seq
    RETURNING 1
""")
_DELETE_THREAD = text(
    "DELETE FROM apex.delivery_cursors WHERE tenant_id = :tenant_id AND thread_id = :thread_id"
)
_DELETE_USER = text("DELETE FROM apex.delivery_cursors WHERE tenant_id = :tenant_id AND user_id = :user_id")


def _owner_lock(tenant_id: str, user_id: str) -> str:
    return f"apex_persistence.cursors.{tenant_id}.{user_id}"


async def _lock_owners(conn: AsyncConnection, owners: Iterable[tuple[str, str]], *, shared: bool) -> None:
    """Advisory transaction locks on each (tenant, user), always in the same order."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    for tenant_id, user_id in sorted(set(owners)):
        await conn.execute(
            text(f"SELECT {function}(hashtext(:name))"), {"name": _owner_lock(tenant_id, user_id)}
        )


async def erase_cursors(conn: AsyncConnection, erasures: Iterable[tuple[str, str, str | None]]) -> None:
    """Deletes the cursors of erased (tenant, user, thread or None for the whole user),
    in the erasure's transaction."""
    found = list(erasures)
    await _lock_owners(conn, ((tenant, user) for tenant, user, _ in found), shared=False)
    for tenant_id, user_id, thread_id in found:
        if thread_id is None:
            await conn.execute(_DELETE_USER, {"tenant_id": tenant_id, "user_id": user_id})
        else:
            await conn.execute(_DELETE_THREAD, {"tenant_id": tenant_id, "thread_id": thread_id})


class CursorStore:
    """The read API's side of the cursors: ``get`` (0 when none is stored) and ``flush``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, q: CursorGet) -> CursorPosition:
        async with self.db.reader(q.tenant_id) as conn:
            seq = await conn.scalar(
                select(delivery_cursors.c.seq).where(
                    delivery_cursors.c.tenant_id == q.tenant_id,
                    delivery_cursors.c.user_id == q.user_id,
                    delivery_cursors.c.thread_id == q.thread_id,
                )
            )
        return CursorPosition(seq=int(seq or 0))

    async def flush(self, q: CursorFlush) -> CursorsStored:
        best: dict[tuple[str, str], int] = {}
        for entry in q.entries:
            key = (entry.user_id, entry.thread_id)
            best[key] = max(best.get(key, 0), entry.seq)
        pairs = sorted(best.items())
        async with self.db.writer() as conn:
            await _lock_owners(conn, ((q.tenant_id, user) for user, _ in best), shared=True)
            result = await conn.execute(
                _UPSERT,
                {
                    "tenant_id": q.tenant_id,
                    "users": [user for (user, _), _ in pairs],
                    "threads": [thread for (_, thread), _ in pairs],
                    "seqs": [seq for _, seq in pairs],
                    "at": datetime.now(UTC),
                },
            )
            return CursorsStored(stored=len(result.all()))
