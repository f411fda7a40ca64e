"""One thread streamed to one connection: replay from ``after_seq`` then live. The
subscription joins the thread's live feed (``feeds.py``, shared by every connection on
the thread) before it reads the replay, reads the replay through the seq the feed hands
over everything after, and holds live events back until the replay is sent: the two
overlap, never leave a gap, and the overlap is dropped by seq, so the seam has no
duplicate either. ``message.send`` joins while its message is being stored: the message
then comes from the feed, with no replay read at all.

When the stream no longer holds the start of what was asked (retention), the missing
part comes from the Postgres archive first; when neither can provide part of it (the
archive does not answer, or holds a gap: it fell behind what the stream dropped), the
client is told with ``replay_incomplete`` and the range (``gap_from`` to ``gap_to``,
history resuming at ``first_seq``), never silently given a partial history.

The subscription knows nothing of connections or of the gateway's services: it is built
from narrow ports (``ports.py``): an ``EventSink`` its frames go to, the thread's log
(``history.ThreadHistory``), the live feeds, and the figures it counts. Its seam is unit
tested with fakes of each (``tests/unit/gateway/test_subscription_seam.py``)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.frames import ErrorFrame, ThreadSubscribed
from apex_gateway.history import ThreadHistory
from apex_gateway.tokens import Principal
from apex_gateway.ws.feeds import event_frame
from apex_gateway.ws.ports import DeliveryFigures, EventSink, LiveFeeds
from apex_gateway.ws.window import DeliveryWindow, ResyncNeeded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubscriptionPorts:
    """What every subscription of one gateway is built from (one per gateway)."""

    history: ThreadHistory
    feeds: LiveFeeds
    figures: DeliveryFigures
    ack_timeout_s: float = 10.0
    max_unacked: int = 4096


class ThreadSubscription:
    def __init__(
        self,
        sink: EventSink,
        ports: SubscriptionPorts,
        who: Principal,
        thread_id: str,
        subject: str,
        after_seq: int,
        max_batch: int = 1,
    ) -> None:
        self.sink = sink
        self.ports = ports
        self.who = who
        self.thread_id = thread_id
        self.subject = subject
        self.window = DeliveryWindow(
            after_seq, ack_timeout_s=ports.ack_timeout_s, max_unacked=ports.max_unacked
        )
        self._joined = False
        self._joined_at = 0
        self._first_kept: int | None = None
        self._stored_through = 0
        self._replaying = True
        self._pending: list[tuple[int, str, float | None]] = []
        self._ended = False
        # a run of this thread's frames queued together may be written as one ``events`` frame
        self._group = (thread_id, max_batch) if max_batch > 1 else None

    @property
    def joined_at(self) -> int:
        """The seq through which this subscription reads the log itself (``join``): the
        thread's last event when its feed started, or the last the feed handed over."""
        return self._joined_at

    @property
    def last_sent(self) -> int:
        return self.window.last_sent

    def resume_after(self, after_seq: int, *, stored_through: int = 0) -> None:
        """Sets the seq the replay starts after, before ``start``; ``stored_through``: a
        seq of the thread known stored (``message.send``'s own event), the least head
        ``thread.subscribed`` reports."""
        self.window = DeliveryWindow(
            after_seq, ack_timeout_s=self.ports.ack_timeout_s, max_unacked=self.ports.max_unacked
        )
        self._stored_through = stored_through

    async def join(self) -> None:
        """Joins the thread's live feed and reads where the stream's retained part starts.
        Neither needs the seq the replay starts after, so ``message.send`` does this while
        its message is being stored; ``start`` does it when it was not done before. Both
        are awaited to their end before a failure is raised: a join still under way when
        ``stop`` runs would leave this subscription on the feed."""
        outcomes = await asyncio.gather(self._join(), self.ports.history.first_kept(), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        self._joined_at, self._first_kept = (int(o) for o in outcomes)  # type: ignore[arg-type]

    async def start(self, ref: str | None = None) -> None:
        if self._first_kept is None:
            await self.join()
        assert self._first_kept is not None
        # Every event after ``joined_at`` comes from the feed (a new feed starts after the
        # thread's last event as the stream leader knows it; a running one hands over
        # everything after the last it handed over), so the replay reads through it.
        joined_at, first_kept = self._joined_at, self._first_kept
        after = self.window.after_seq
        archived: list[tuple[int, str] | tuple[int, int]] = []
        if after + 1 < first_kept:
            archived = await self._from_archive(first_kept)
        sent = [item[0] for item in archived if isinstance(item[1], str)]
        head = max(joined_at, self._stored_through, sent[-1] if sent else 0)
        self.sink.send(ThreadSubscribed(ref=ref, thread_id=self.thread_id, from_seq=after, head_seq=head))
        for seq, item in archived:
            if isinstance(item, int):  # a gap, told where it falls in seq order
                self.sink.send(
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
            if not await self.sink.room():  # a replay is paced by the client's reading
                return
            self.ports.figures.replayed()
            self._offer(seq, item)
        start = max(after, first_kept - 1, 0)
        if joined_at > start and not await self._replay_through(start, joined_at):
            return
        pending, self._pending = self._pending, []
        self._replaying = False
        for seq, frame, occurred in pending:
            self.live(seq, frame, occurred)

    async def _replay_through(self, after: int, through: int) -> bool:
        """Offers the stream's events in (after, through] and on; False when the sink is
        ending. A read that ends short of ``through`` (the log's promise broken, e.g. a
        replica that lost its tail) is read again once: what the live feed will not bring
        is never skipped."""
        if not await self._replay(after, through):
            return False
        if not self._ended and self.window.last_sent < through:
            log.warning(
                "replay of %s ended at %d short of %d; reading the rest again",
                self.subject,
                self.window.last_sent,
                through,
            )
            if not await self._replay(self.window.last_sent, through):
                return False
            if not self._ended and self.window.last_sent < through:
                raise Unavailable(
                    "The thread's history cannot be read right now; subscribe again shortly.",
                    code=ErrorCode.BUS_UNAVAILABLE,
                )
        return True

    async def _join(self) -> int:
        joined_at = await self.ports.feeds.join(self.subject, self.thread_id, self)
        self._joined = True
        return joined_at

    async def _replay(self, after: int, through: int) -> bool:
        """Offers the stream's events in (after, through]; False when the sink is ending."""
        replayed = 0
        try:
            async for seq, data in self.ports.history.read(
                self.subject, after_seq=after, through_seq=through
            ):
                if self._ended or not await self.sink.room():
                    return False
                if seq > self.window.last_sent:
                    replayed += 1
                    self._offer(seq, event_frame(self.thread_id, seq, orjson.loads(data)))
        finally:
            self.ports.figures.replayed(replayed)
        return True

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
        archive = await self.ports.history.archived(
            self.who, self.thread_id, self.window.after_seq, first_kept
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
                self.sink.push_event(frame, occurred_at, self._group)  # a full sink ends the connection
        except ResyncNeeded as resync:
            self._resync(resync.last_seq)

    def _resync(self, last_seq: int) -> None:
        if self._ended:
            return
        self._ended = True
        self.sink.send(
            ErrorFrame(
                code=ErrorCode.RESYNC_REQUIRED,
                message="You fell behind; resubscribe with after_seq = last_seq.",
                retryable=True,
                thread_id=self.thread_id,
                last_seq=last_seq,
            )
        )
        self.ports.figures.resynced()
        self.sink.drop_subscription(self.thread_id)

    def ack(self, seq: int) -> None:
        waited = self.window.ack(seq, time.monotonic())
        if waited is not None:
            self.ports.figures.ack_waited(waited)

    def resend_due(self, now: float) -> None:
        try:
            frames = self.window.due(now)
        except ResyncNeeded as resync:
            self._resync(resync.last_seq)
            return
        for frame in frames:
            self.sink.push_event(frame, None, self._group)
            self.ports.figures.resent()

    async def stop(self) -> None:
        self._ended = True
        self._pending = []
        if self._joined:
            self._joined = False
            await self.ports.feeds.leave(self.subject, self)
