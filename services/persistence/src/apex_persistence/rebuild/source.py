"""The log a rebuild reads: APEX_EVT from its first stored message, and the Postgres
archive for every sequence the stream no longer holds (beyond its retention, or in a
gap). Purged subjects (erasures) are gaps that the archive has no rows for either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import nats.errors
import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy import select

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.streams import APEX_EVT
from apex_contracts.subjects import EVT_ALL, thread_events
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.tables import events as archive
from apex_persistence.projection.delivery import Delivery

_END_OF_BATCH: Final = frozenset({"204", "404"})


class LogSource:
    """Reads (seq, subject, data) of every event in sequence order, in batches."""

    def __init__(self, nc: NATS, db: Database, *, stream: str = APEX_EVT.name, batch: int = 1000) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.db = db
        self.stream = stream
        self.batch = batch

    async def head(self) -> int:
        """The stream's last sequence (0 when empty)."""
        return int((await self.js.stream_info(self.stream)).state.last_seq)

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
        """Up to ``batch`` stored messages from ``start`` (a direct get: no consumer)."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=self.batch + 1)
        out: list[Delivery] = []
        try:
            request = {"seq": start, "next_by_subj": EVT_ALL, "batch": self.batch}
            await self.nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", orjson.dumps(request), reply=inbox)
            while True:
                msg = await sub.next_msg(timeout=10.0)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status in _END_OF_BATCH:
                    break
                if status is not None:
                    raise Unavailable(
                        f"direct get on {self.stream} failed ({status})", code=ErrorCode.BUS_UNAVAILABLE
                    )
                seq = int(headers["Nats-Sequence"])
                if seq <= upto:
                    out.append(Delivery(seq, headers["Nats-Subject"], msg.data))
                if len(out) >= self.batch or seq >= upto:
                    break
        except nats.errors.TimeoutError as exc:
            raise Unavailable(
                f"direct get on {self.stream} timed out", code=ErrorCode.BUS_UNAVAILABLE
            ) from exc
        finally:
            await sub.unsubscribe()
        return out
