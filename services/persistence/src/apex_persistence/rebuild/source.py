"""The log a rebuild reads: APEX_EVT from its first stored message, and the Postgres
archive for every sequence the stream no longer holds (beyond its retention, or in a
gap). Purged subjects (erasures) are gaps that the archive has no rows for either."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from sqlalchemy import select

from apex_contracts.streams import APEX_EVT
from apex_contracts.subjects import EVT_ALL, thread_events
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.tables import events as archive
from apex_persistence.projection.delivery import Delivery
from apex_runtime import Bus


class LogSource:
    """Reads (seq, subject, data) of every event in sequence order, in batches."""

    def __init__(self, bus: Bus, db: Database, *, stream: str = APEX_EVT.name, batch: int = 1000) -> None:
        self.bus = bus
        self.db = db
        self.stream = stream
        self.batch = batch

    async def head(self) -> int:
        """The stream's last sequence (0 when empty)."""
        return await self.bus.head_seq(self.stream)

    async def batches(self, after: int, upto: int) -> AsyncIterator[list[Delivery]]:
        """Every event with ``after`` < seq <= ``upto``, in order: stream messages, and
        archive rows for the sequences the stream does not return."""
        cursor = after
        while cursor < upto:
            stored = await self._stream_batch(cursor + 1, upto)
            end = stored[0].seq if stored else upto + 1
            if end > cursor + 1:
                async for chunk in self._archive(cursor, end):
                    yield chunk
            if not stored:
                return
            yield stored
            cursor = stored[-1].seq

    async def _archive(self, after: int, before: int) -> AsyncIterator[list[Delivery]]:
        """Archive rows with ``after`` < seq < ``before``."""
        cursor = after
        while True:
            async with self.db.writer() as conn:
                rows = (
                    await conn.execute(
                        select(
                            archive.c.seq,
                            archive.c.tenant_id,
                            archive.c.user_id,
                            archive.c.thread_id,
                            archive.c.payload,
                        )
                        .where(archive.c.seq > cursor, archive.c.seq < before)
                        .order_by(archive.c.seq)
                        .limit(self.batch)
                    )
                ).all()
            if not rows:
                return
            yield [
                Delivery(r.seq, thread_events(r.tenant_id, r.user_id, r.thread_id), orjson.dumps(r.payload))
                for r in rows
            ]
            cursor = rows[-1].seq

    async def _stream_batch(self, start: int, upto: int) -> list[Delivery]:
        """Up to ``batch`` stored messages from ``start`` (the bus's range read)."""
        out: list[Delivery] = []
        async for stored in self.bus.read_range(
            EVT_ALL, after_seq=start - 1, batch=self.batch, stream=self.stream, upto_seq=upto
        ):
            out.append(Delivery(stored.seq, stored.subject, stored.data))
            if len(out) >= self.batch:
                break
        return out
