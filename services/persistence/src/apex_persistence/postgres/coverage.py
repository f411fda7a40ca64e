"""What the archive received of the log: ``apex.archive_coverage``, disjoint seq ranges of
APEX_EVT messages delivered to the live history projection (events of every thread,
erased ones and undecodable ones included: received is what counts). Written in each
batch's transaction, merged with the ranges it touches, so the table stays a handful of
rows. A range of the stream the archive never received (retention dropped it first, or a
size cap) is a gap a replay must name: ``missing`` answers it for a window."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_MERGE = text("""
    WITH touched AS (
        DELETE FROM apex.archive_coverage WHERE to_seq >= :lo - 1 AND from_seq <= :hi + 1
        RETURNING from_seq, to_seq
    )
    INSERT INTO apex.archive_coverage (from_seq, to_seq)
    SELECT LEAST(:lo, coalesce(min(from_seq), :lo)), GREATEST(:hi, coalesce(max(to_seq), :hi)) FROM touched
""")
_WITHIN = text("""
    SELECT from_seq, to_seq FROM apex.archive_coverage
    WHERE to_seq >= :lo AND from_seq <= :hi ORDER BY from_seq
""")
_ANY = text("SELECT EXISTS (SELECT 1 FROM apex.archive_coverage)")


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive seqs as inclusive ranges, in order."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


async def record(conn: AsyncConnection, seqs: Iterable[int]) -> None:
    """Adds the delivered seqs to the coverage (the caller holds the writer lock)."""
    for lo, hi in runs(seqs):
        await conn.execute(_MERGE, {"lo": lo, "hi": hi})


async def missing(conn: AsyncConnection, after_seq: int, before_seq: int) -> list[tuple[int, int]] | None:
    """The ranges of (after_seq, before_seq) the archive never received; None when it has
    no record at all (an archive older than this record)."""
    lo, hi = after_seq + 1, before_seq - 1
    if lo > hi:
        return []
    if not await conn.scalar(_ANY):
        return None
    gaps: list[tuple[int, int]] = []
    cursor = lo
    for row in await conn.execute(_WITHIN, {"lo": lo, "hi": hi}):
        if row.from_seq > cursor:
            gaps.append((cursor, row.from_seq - 1))
        cursor = max(cursor, row.to_seq + 1)
    if cursor <= hi:
        gaps.append((cursor, hi))
    return gaps
