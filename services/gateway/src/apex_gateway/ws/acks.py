"""A connection's acks, stored as delivery cursors behind its frames.

Storing an ack can take milliseconds: the first ack of a thread that Redis holds no
cursor for asks persistence for the stored one. Frames are handled one at a time, so an
ack stored in line held up the frame after it: a chat page that acks a run's last event
and sends its next message waited for that read before the message was even looked at.
Acks are now handed to ``CursorWrites`` and stored one thread at a time by one task per
connection, while the frames after them are handled.

What stays true:
- Acks of one thread coalesce: a cursor only moves forward, so the furthest ack asked
  for is the one stored (each write still goes through ``Cursors.advance``).
- Read your own acks: ``thread.subscribe`` with ``after_seq: "cursor"`` waits for the
  thread's acks asked for before it, and ``pong`` comes after every earlier ack is stored
  (``settled``). A connection that ends stores what it was asked first (``close``).
- An ack that cannot be stored is answered with its error (``store_unavailable``, with
  the ack's ``ref``), as before, only later.

Stored behind the frames, that read still ran beside the next run, and slowed it by about
as much as it had held the message up. A thread the connection's own send created, and
that had no event when its feed started (``ThreadSubscription.joined_at == 0``), cannot
have a stored cursor (nobody can have acked an event of it), so ``fresh`` starts its
cursor at 0 in Redis (``SET NX``) before any ack of it, and its first ack is one Redis
call. A thread that already had events (a retried send) keeps the read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from apex_contracts import ApexError, InternalError, new_id

log = logging.getLogger(__name__)

Advance = Callable[[str, int], Awaitable[object]]  # (thread, seq): stores the cursor
Refused = Callable[[ApexError, str | None], None]  # (why, the ack's ref): answers the client
Start = Callable[[str], Awaitable[None]]  # a new thread's cursor starts at 0 (never raises)


_WRITTEN_KEPT = 10_000


class CursorWrites:
    def __init__(self, advance: Advance, refused: Refused, start: Start | None = None) -> None:
        self._advance = advance
        self._refused = refused
        self._start = start
        self._fresh: dict[str, None] = {}  # new threads whose cursor is to start at 0, in order
        self._wanted: dict[str, tuple[int, str | None]] = {}  # thread -> (furthest seq, its ref)
        self._writing: tuple[str, int] | None = None  # (thread, seq) being stored now
        self._written: dict[str, int] = {}  # thread -> the furthest seq stored (a bounded memo)
        self._worker: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    def ask(self, thread_id: str, seq: int, ref: str | None = None) -> None:
        """Stores ``seq`` as the thread's cursor soon (never before an earlier ack)."""
        wanted = self._wanted.get(thread_id)
        writing = self._writing
        if (
            (wanted is not None and seq <= wanted[0])
            or (writing is not None and writing[0] == thread_id and seq <= writing[1])
            or seq <= self._written.get(thread_id, -1)
        ):
            return  # a further ack of the thread is stored, or will be
        self._wanted[thread_id] = (seq, ref)
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="ws-cursor-writes")

    def fresh(self, thread_id: str) -> None:
        """A thread the connection's send just created: its cursor starts at 0."""
        self._fresh[thread_id] = None
        self._ensure_worker()

    def pending(self, thread_id: str | None = None) -> bool:
        """Whether an ack (of ``thread_id``, or of any thread) is not stored yet."""
        if thread_id is None:
            return bool(self._wanted) or self._writing is not None
        return thread_id in self._wanted or (self._writing is not None and self._writing[0] == thread_id)

    async def settled(self, thread_id: str | None = None) -> None:
        """Returns once every ack asked for so far (of ``thread_id`` only, if given) is
        stored or refused."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self.pending(thread_id))

    async def close(self, timeout_s: float) -> None:
        """Stores what was asked for, waiting at most ``timeout_s``; then stops."""
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.settled()
        except TimeoutError:
            log.warning("%d acks not stored when the connection ended", len(self._wanted))
        self._worker.cancel()

    async def _work(self) -> None:
        while self._fresh or self._wanted:
            if self._fresh:  # before any ack of the thread, which then finds its key
                fresh = next(iter(self._fresh))
                del self._fresh[fresh]
                if self._start is not None:
                    await self._start(fresh)
                continue
            thread_id = next(iter(self._wanted))
            seq, ref = self._wanted.pop(thread_id)
            self._writing = (thread_id, seq)
            try:
                await self._advance(thread_id, seq)
                if len(self._written) >= _WRITTEN_KEPT:
                    self._written.clear()
                self._written[thread_id] = seq
            except ApexError as exc:
                self._refused(exc, ref)
            except Exception:  # the boundary, as for a frame: a defect answers the ack
                incident = new_id("evt")
                log.exception("storing an ack of %s failed (incident %s)", thread_id, incident)
                self._refused(InternalError(details={"incident": incident}), ref)
            finally:
                self._writing = None
                async with self._changed:
                    self._changed.notify_all()
