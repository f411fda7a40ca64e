"""One thread streamed to one connection: replay from ``after_seq`` then live, through a
JetStream ordered consumer, so the seam between replay and live has no gap and no
duplicate (the consumer delivers every stored message once, in stream order).

When the stream no longer holds the start of what was asked (retention), the missing
part comes from the Postgres archive first; when neither can provide it, the client is
told with ``replay_incomplete`` and the first seq still available, never silently given
a partial history."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from apex_contracts import ApexError, ErrorCode
from apex_contracts.events import client_view
from apex_contracts.frames import ErrorFrame, ThreadSubscribed
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsArchive, EventsPage
from apex_gateway.ws.window import DeliveryWindow, ResyncNeeded

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection

log = logging.getLogger(__name__)


def event_frame(thread_id: str, seq: int, event: dict[str, Any]) -> str:
    return orjson.dumps(
        {"type": "event", "thread_id": thread_id, "seq": seq, "event": client_view(event)}
    ).decode()


def _epoch_s(occurred_at: Any) -> float | None:
    """An event's ``occurred_at`` as epoch seconds; None when it cannot be read."""
    try:
        return datetime.fromisoformat(occurred_at).timestamp()
    except (TypeError, ValueError):
        return None


class ThreadSubscription:
    def __init__(self, conn: Connection, thread_id: str, subject: str, after_seq: int) -> None:
        self.conn = conn
        self.thread_id = thread_id
        self.subject = subject
        settings = conn.services.settings
        self.window = DeliveryWindow(
            after_seq, ack_timeout_s=settings.ack_timeout_ms / 1000, max_unacked=settings.ws_send_queue
        )
        self._sub: Any = None
        self._replaying_until = 0
        self._ended = False

    @property
    def last_sent(self) -> int:
        return self.window.last_sent

    async def start(self, ref: str | None = None) -> None:
        bus = self.conn.services.bus
        after = self.window.after_seq
        first_kept, last = await asyncio.gather(bus.first_seq(), bus.last_seq(self.subject))
        archived: list[tuple[int, str]] = []
        complete = True
        if after + 1 < first_kept:
            complete, archived = await self._from_archive(first_kept)
        head = max(last, archived[-1][0] if archived else 0)
        self._replaying_until = head
        self.conn.send(ThreadSubscribed(ref=ref, thread_id=self.thread_id, from_seq=after, head_seq=head))
        if not complete:
            self.conn.send(
                ErrorFrame(
                    code=ErrorCode.REPLAY_INCOMPLETE,
                    message=f"Events before seq {first_kept} cannot be replayed right now; history resumes there.",
                    retryable=True,
                    thread_id=self.thread_id,
                    first_seq=first_kept,
                    ref=ref,
                )
            )
        for seq, frame in archived:
            self.conn.services.metrics.events_replayed.inc()
            self._offer(seq, frame)
        self._sub = await bus.js.subscribe(
            self.subject,
            ordered_consumer=True,
            cb=self._deliver,
            idle_heartbeat=5.0,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(after + 1, first_kept, 1)
            ),
        )

    async def _from_archive(self, first_kept: int) -> tuple[bool, list[tuple[int, str]]]:
        """Archived events in (after_seq, first_kept): what the stream no longer holds.
        (False, partial) when the archive cannot answer."""
        who = self.conn.principal
        after = self.window.after_seq
        out: list[tuple[int, str]] = []
        while after < first_kept - 1:
            query = EventsArchive(
                tenant_id=who.tenant_id,
                user_id=who.user_id,
                thread_id=self.thread_id,
                after_seq=after,
                limit=1000,
            )
            try:
                page = await self.conn.services.bus.query(Q_EVENTS_ARCHIVE, query, EventsPage)
            except ApexError as exc:
                log.warning("archive replay of %s failed: %s", self.thread_id, exc.message)
                return False, out
            kept = [e for e in page.events if e.seq < first_kept]
            out += [(e.seq, event_frame(self.thread_id, e.seq, e.event)) for e in kept]
            if len(kept) < len(page.events) or not page.events:
                return True, out
            after = page.events[-1].seq
        return True, out

    async def _deliver(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if self._ended or seq <= self.window.last_sent:
            return
        event = orjson.loads(msg.data)
        occurred = None
        if seq <= self._replaying_until:
            self.conn.services.metrics.events_replayed.inc()
        else:
            occurred = _epoch_s(event.get("occurred_at"))
        self._offer(seq, event_frame(self.thread_id, seq, event), occurred)

    def _offer(self, seq: int, frame: str, occurred_at: float | None = None) -> None:
        previous = self.window.last_sent
        try:
            if self.window.offer(seq, frame, time.monotonic()) and not self.conn.push_event(
                frame, occurred_at
            ):
                raise ResyncNeeded(previous)
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
            if not self.conn.push_event(frame):
                self._resync(self.window.acked)
                return
            self.conn.services.metrics.events_resent.inc()

    async def stop(self) -> None:
        self._ended = True
        if self._sub is None:
            return
        sub, self._sub = self._sub, None
        try:
            await sub.unsubscribe()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.debug("unsubscribe of %s failed: %r", self.subject, exc)
