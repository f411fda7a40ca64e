"""One thread streamed to one connection: replay from ``after_seq`` then live. The
subscription joins the thread's live feed (``feeds.py``, shared by every connection on
the thread) before it reads the replay, and holds live events back until the replay is
sent: the two overlap, never leave a gap, and the overlap is dropped by seq, so the seam
has no duplicate either.

When the stream no longer holds the start of what was asked (retention), the missing
part comes from the Postgres archive first; when neither can provide part of it (the
archive does not answer, or holds a gap: it fell behind what the stream dropped), the
client is told with ``replay_incomplete`` and the range (``gap_from`` to ``gap_to``,
history resuming at ``first_seq``), never silently given a partial history."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson

from apex_contracts import ErrorCode
from apex_contracts.frames import ErrorFrame, ThreadSubscribed
from apex_gateway.history import archived_events
from apex_gateway.ws.feeds import event_frame
from apex_gateway.ws.window import DeliveryWindow, ResyncNeeded

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection

log = logging.getLogger(__name__)


class ThreadSubscription:
    def __init__(self, conn: Connection, thread_id: str, subject: str, after_seq: int) -> None:
        self.conn = conn
        self.thread_id = thread_id
        self.subject = subject
        settings = conn.services.settings
        self.window = DeliveryWindow(
            after_seq, ack_timeout_s=settings.ack_timeout_ms / 1000, max_unacked=settings.ws_send_queue
        )
        self._joined = False
        self._replaying = True
        self._pending: list[tuple[int, str, float | None]] = []
        self._ended = False

    @property
    def last_sent(self) -> int:
        return self.window.last_sent

    async def start(self, ref: str | None = None) -> None:
        services = self.conn.services
        bus = services.bus
        await services.feeds.join(self.subject, self.thread_id, self)
        self._joined = True
        after = self.window.after_seq
        # The head comes from the stream leader and the replay reads through it: in a
        # cluster a lagging replica answering the replay must not leave a gap before the
        # live feed's first event.
        first_kept, last = await asyncio.gather(bus.first_seq(), bus.last_seq(self.subject, leader=True))
        archived: list[tuple[int, str] | tuple[int, int]] = []
        if after + 1 < first_kept:
            archived = await self._from_archive(first_kept)
        sent = [item[0] for item in archived if isinstance(item[1], str)]
        head = max(last, sent[-1] if sent else 0)
        self.conn.send(ThreadSubscribed(ref=ref, thread_id=self.thread_id, from_seq=after, head_seq=head))
        for seq, item in archived:
            if isinstance(item, int):  # a gap, told where it falls in seq order
                self.conn.send(
                    ErrorFrame(
                        code=ErrorCode.REPLAY_INCOMPLETE,
                        message=f"Events {seq} to {item} cannot be replayed; history resumes at seq {item + 1}.",
                        retryable=True,
                        thread_id=self.thread_id,
                        first_seq=item + 1,
                        gap_from=seq,
                        gap_to=item,
                        ref=ref,
                    )
                )
                continue
            if not await self.conn.room():  # a replay is paced by the client's reading
                return
            services.metrics.events_replayed.inc()
            self._offer(seq, item)
        async for seq, data in bus.read_subject(
            self.subject, after_seq=max(after, first_kept - 1, 0), through_seq=last
        ):
            if self._ended or not await self.conn.room():
                return
            if seq > self.window.last_sent:
                services.metrics.events_replayed.inc()
                self._offer(seq, event_frame(self.thread_id, seq, orjson.loads(data)))
        pending, self._pending = self._pending, []
        self._replaying = False
        for seq, frame, occurred in pending:
            self.live(seq, frame, occurred)

    def live(self, seq: int, frame: str, occurred_at: float | None) -> None:
        """An event of the thread's live feed (held back while the replay is sent)."""
        if self._ended:
            return
        if self._replaying:
            self._pending.append((seq, frame, occurred_at))
        elif seq > self.window.last_sent:
            self._offer(seq, frame, occurred_at)

    async def _from_archive(self, first_kept: int) -> list[tuple[int, str] | tuple[int, int]]:
        """What the stream no longer holds, in seq order: archived events as frames
        (seq, frame), and the gaps nobody can fill (first seq, last seq)."""
        archive = await archived_events(
            self.conn.services.bus, self.conn.principal, self.thread_id, self.window.after_seq, first_kept
        )
        return [
            (item[0], item[1])
            if isinstance(item[1], int)
            else (item[0], event_frame(self.thread_id, item[0], item[1]))
            for item in archive.in_order()
        ]

    def _offer(self, seq: int, frame: str, occurred_at: float | None = None) -> None:
        try:
            if self.window.offer(seq, frame, time.monotonic()):
                self.conn.push_event(frame, occurred_at)  # a full outbox ends the connection
        except ResyncNeeded as resync:
            self._resync(resync.last_seq)

    def _resync(self, last_seq: int) -> None:
        if self._ended:
            return
        self._ended = True
        self.conn.send(
            ErrorFrame(
                code=ErrorCode.RESYNC_REQUIRED,
                message="You fell behind; resubscribe with after_seq = last_seq.",
                retryable=True,
                thread_id=self.thread_id,
                last_seq=last_seq,
            )
        )
        self.conn.services.metrics.resyncs.inc()
        self.conn.drop_subscription(self.thread_id)

    def ack(self, seq: int) -> None:
        waited = self.window.ack(seq, time.monotonic())
        if waited is not None:
            self.conn.services.metrics.ack_latency.observe(waited)

    def resend_due(self, now: float) -> None:
        try:
            frames = self.window.due(now)
        except ResyncNeeded as resync:
            self._resync(resync.last_seq)
            return
        for frame in frames:
            self.conn.push_event(frame)
            self.conn.services.metrics.events_resent.inc()

    async def stop(self) -> None:
        self._ended = True
        self._pending = []
        if self._joined:
            self._joined = False
            await self.conn.services.feeds.leave(self.subject, self)
