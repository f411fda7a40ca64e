"""The erasure ledger (``apex.erasures``): one row per erased thread or user, written by
the history projection in the same transaction that deletes the rows. It outlives the
tombstone event (which the eraser purges from the log), so replays and rebuilds of every
store drop the erased data too; the eraser works off its ``purged_at``/``audited_at``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_persistence.postgres.db import Database
from apex_persistence.postgres.tables import erasures
from apex_persistence.projection.delivery import Projected, covers
from apex_persistence.projection.erasure import Erasure

_COVERING = text("""
    SELECT kind, tenant_id, user_id, thread_id, seq, event_id, requested_by, requested_at, runs
    FROM apex.erasures
    WHERE (kind = 'thread' AND thread_id = ANY(:threads)) OR (kind = 'user' AND user_id = ANY(:users))
""")
_RECORD = text("""
    INSERT INTO apex.erasures AS e
        (tenant_id, target, kind, user_id, thread_id, seq, event_id, requested_by, requested_at, runs)
    VALUES (:tenant_id, :target, :kind, :user_id, :thread_id, :seq, :event_id, :requested_by, :requested_at,
            CAST(:runs AS text[]))
    ON CONFLICT (tenant_id, target) DO UPDATE SET
        runs = ARRAY(SELECT DISTINCT unnest(e.runs || EXCLUDED.runs) ORDER BY 1),
        event_id = CASE WHEN EXCLUDED.seq > e.seq THEN EXCLUDED.event_id ELSE e.event_id END,
        requested_by = CASE WHEN EXCLUDED.seq > e.seq THEN EXCLUDED.requested_by ELSE e.requested_by END,
        requested_at = CASE WHEN EXCLUDED.seq > e.seq THEN EXCLUDED.requested_at ELSE e.requested_at END,
        purged_at = CASE WHEN EXCLUDED.seq > e.seq THEN NULL ELSE e.purged_at END,
        audited_at = CASE WHEN EXCLUDED.seq > e.seq THEN NULL ELSE e.audited_at END,
        seq = GREATEST(e.seq, EXCLUDED.seq)
""")
# Entries of an erased user go (the record of the erasure itself stays), through the one
# function that may delete them (the audit log is not the writer's to change).
_DELETE_USER_AUDIT = text("SELECT apex.audit_erase_user(:tenant_id, :user_id)")


def ledger_row(erasure: Erasure) -> dict[str, object]:
    return {
        "tenant_id": erasure.tenant_id,
        "target": erasure.target,
        "kind": erasure.kind,
        "user_id": erasure.user_id,
        "thread_id": erasure.thread_id,
        "seq": erasure.seq,
        "event_id": erasure.event_id,
        "requested_by": erasure.requested_by,
        "requested_at": erasure.at,
        "runs": sorted(erasure.runs),
    }


def _erasure(row: Row[Any]) -> Erasure:
    return Erasure(
        kind=row.kind,
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        thread_id=row.thread_id,
        seq=row.seq,
        event_id=row.event_id,
        requested_by=row.requested_by,
        at=row.requested_at,
        runs=frozenset(row.runs or ()),
    )


async def record(conn: AsyncConnection, found: Sequence[Erasure]) -> None:
    """Adds the erasures to the ledger. A later tombstone of a thread or user already
    erased extends its erasure to the later sequence (and its runs), to be purged and
    audited again; an earlier or the same one only adds the runs it names."""
    if found:
        await conn.execute(_RECORD, [ledger_row(e) for e in found])


async def covering(conn: AsyncConnection, projected: Sequence[Projected]) -> list[Erasure]:
    """The recorded erasures that cover any of these events."""
    if not projected:
        return []
    rows = await conn.execute(
        _COVERING,
        {
            "threads": sorted({p.event.thread_id for p in projected}),
            "users": sorted({p.event.user_id for p in projected}),
        },
    )
    return [e for e in map(_erasure, rows) if any(covers([e], p) for p in projected)]


async def purge_again(conn: AsyncConnection, hit: Sequence[Erasure]) -> None:
    """Events of an erased subject reached the log after its purge: purge it once more."""
    for erasure in hit:
        await conn.execute(
            update(erasures)
            .where(erasures.c.tenant_id == erasure.tenant_id, erasures.c.target == erasure.target)
            .values(purged_at=None)
        )


async def purge_users_again(conn: AsyncConnection, pairs: set[tuple[str, str]]) -> None:
    """Audit entries of erased users reached the audit stream after their purge."""
    for tenant_id, user_id in pairs:
        await conn.execute(
            update(erasures)
            .where(erasures.c.tenant_id == tenant_id, erasures.c.target == f"user:{user_id}")
            .values(purged_at=None)
        )


async def delete_user_audit(conn: AsyncConnection, erasure: Erasure) -> int:
    """Deletes the erased user's audit entries; returns how many went."""
    removed = await conn.scalar(
        _DELETE_USER_AUDIT, {"tenant_id": erasure.tenant_id, "user_id": erasure.user_id}
    )
    return int(removed or 0)


async def erased_users(conn: AsyncConnection, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (tenant, user) pairs among ``pairs`` whose user was erased."""
    if not pairs:
        return set()
    rows = await conn.execute(
        select(erasures.c.tenant_id, erasures.c.user_id).where(
            erasures.c.kind == "user", erasures.c.user_id.in_(sorted({user for _, user in pairs}))
        )
    )
    return {(r.tenant_id, r.user_id) for r in rows} & pairs


class ErasureLedger:
    """The eraser's view of the ledger."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[Erasure]:
        """Every erasure ever recorded (a rebuild seeds its fresh store with them)."""
        async with self.db.writer() as conn:
            rows = await conn.execute(select(erasures).order_by(erasures.c.seq))
            return [_erasure(r) for r in rows]

    async def pending(self, limit: int = 100) -> list[tuple[Erasure, bool, bool]]:
        """Erasures not yet purged from the log or not yet audited: (erasure, purged, audited)."""
        async with self.db.writer() as conn:
            rows = await conn.execute(
                select(erasures)
                .where((erasures.c.purged_at.is_(None)) | (erasures.c.audited_at.is_(None)))
                .order_by(erasures.c.seq)
                .limit(limit)
            )
            return [(_erasure(r), r.purged_at is not None, r.audited_at is not None) for r in rows]

    async def mark(self, erasure: Erasure, column: str) -> None:
        """Sets ``purged_at`` or ``audited_at`` of the erasure to now, unless a later
        tombstone of the same target replaced it meanwhile (that one is still to do)."""
        if column not in ("purged_at", "audited_at"):
            raise ValueError(column)
        async with self.db.writer() as conn:
            await conn.execute(
                update(erasures)
                .where(
                    erasures.c.tenant_id == erasure.tenant_id,
                    erasures.c.target == erasure.target,
                    erasures.c.seq == erasure.seq,
                )
                .values({column: datetime.now(UTC)})
            )
