"""A thread's history as every delivery path reads it (socket replay, the events endpoint,
SSE): what the stream no longer holds (retention) comes from the Postgres archive, with
its original seq and id; when the archive cannot answer, or holds a gap (it fell behind
what the stream no longer keeps), the caller says ``replay_incomplete`` with the range
(``gap_from`` to ``first_seq - 1``), never starts later silently.

``ThreadHistory`` is the port every reader holds (a thread subscription, the events
endpoint, SSE); ``ThreadLog`` is its implementation on the bus, built once by the
composition root. ``NextEvent`` is how a long-poll waits: a listener on the thread's live feed (one per
thread per gateway, ``ws/feeds.py``) that wakes when an event after a seq is stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from apex_contracts import ApexError, ErrorCode
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsArchive, EventsPage
from apex_gateway.tokens import Principal
from apex_runtime import Bus

log = logging.getLogger(__name__)
ARCHIVE_PAGE = 1000


class ReplayIncomplete(ApexError):
    """Events ``gap_from`` to ``first_seq - 1`` cannot be read (the archive did not answer,
    or never received them: the stream dropped them first); history resumes at
    ``first_seq``."""

    default_code = ErrorCode.REPLAY_INCOMPLETE

    def __init__(self, thread_id: str, first_seq: int, gap_from: int = 1) -> None:
        super().__init__(
            f"Events {gap_from} to {first_seq - 1} cannot be replayed; history resumes at seq "
            f"{first_seq}. Ask again later, or with after_seq={first_seq - 1} to go on.",
            retryable=True,
            details={
                "thread_id": thread_id,
                "first_seq": first_seq,
                "gap_from": gap_from,
                "gap_to": first_seq - 1,
            },
        )
        self.first_seq = first_seq
        self.gap_from = gap_from


Gap = tuple[int, int]  # inclusive seqs neither the stream nor the archive can give


@dataclass(frozen=True)
class Archived:
    """What the archive gave for (after_seq, first_kept), oldest first, and the ranges of
    that window nobody can give (in order). A reader sends each gap where it falls in seq
    order (``in_order``): never a silently partial history."""

    events: list[tuple[int, dict[str, Any]]]
    gaps: list[Gap]

    def in_order(self) -> list[tuple[int, dict[str, Any]] | Gap]:
        """Events and gaps by seq (a gap sorts by its first seq)."""
        items: list[tuple[int, dict[str, Any]] | Gap] = [*self.events, *self.gaps]
        return sorted(items, key=lambda item: item[0])


class ThreadHistory(Protocol):
    """A thread's stored events: the stream's retained part, and the archive before it."""

    async def first_kept(self) -> int:
        """The first seq the stream still holds (anything before is only archived)."""
        ...

    async def head(self, subject: str, *, leader: bool = False) -> int:
        """The seq of the newest event on ``subject`` (0: none); with ``leader``, an
        answer that includes every acknowledged publish (a cluster's followers may lag)."""
        ...

    def read(
        self, subject: str, *, after_seq: int, through_seq: int = 0, batch: int = 1000
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(seq, payload) of the events on ``subject`` with seq > ``after_seq``, in order,
        from the stream. With ``through_seq`` (a seq ``head(leader=True)`` gave) the read
        reaches it or raises Unavailable: it never ends short of it silently."""
        ...

    async def archived(
        self, who: Principal, thread_id: str, after_seq: int, first_kept: int, limit: int | None = None
    ) -> Archived:
        """Archived events with seq in (after_seq, first_kept), oldest first, at most
        ``limit``, and the gaps of that window nobody can give (``Archived``)."""
        ...


class ThreadLog:
    """``ThreadHistory`` on the bus: the stream by direct gets, the archive by the
    persistence query ``apex.q.events.archive``."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def first_kept(self) -> int:
        return await self._bus.first_seq()

    async def head(self, subject: str, *, leader: bool = False) -> int:
        return await self._bus.last_seq(subject, leader=leader)

    def read(
        self, subject: str, *, after_seq: int, through_seq: int = 0, batch: int = 1000
    ) -> AsyncIterator[tuple[int, bytes]]:
        return self._bus.read_subject(subject, after_seq=after_seq, through_seq=through_seq, batch=batch)

    async def archived(
        self, who: Principal, thread_id: str, after_seq: int, first_kept: int, limit: int | None = None
    ) -> Archived:
        return await archived_events(self._bus, who, thread_id, after_seq, first_kept, limit)


async def archived_events(
    bus: Bus, who: Principal, thread_id: str, after_seq: int, first_kept: int, limit: int | None = None
) -> Archived:
    """Archived events with seq in (after_seq, first_kept), oldest first, at most
    ``limit``: what the stream no longer holds, and the gaps of that window (ranges the
    archive never received, or the rest of the window when it does not answer)."""
    out: list[tuple[int, dict[str, Any]]] = []
    after = after_seq
    gaps: list[Gap] | None = None
    while after < first_kept - 1 and (limit is None or len(out) < limit):
        query = EventsArchive(
            tenant_id=who.tenant_id,
            user_id=who.user_id,
            thread_id=thread_id,
            after_seq=after,
            limit=ARCHIVE_PAGE,
            before_seq=first_kept if gaps is None else None,
        )
        try:
            page = await bus.query(Q_EVENTS_ARCHIVE, query, EventsPage)
        except ApexError as exc:
            log.warning("archive read of %s failed: %s", thread_id, exc.message)
            return Archived(out, [*(gaps or []), ((out[-1][0] if out else after_seq) + 1, first_kept - 1)])
        if gaps is None:  # the first page names the gaps of the whole window
            gaps = [(lo, hi) for lo, hi in page.missing or []]
            if gaps:
                log.warning(
                    "archive of %s never received %s (the stream keeps from %d)", thread_id, gaps, first_kept
                )
        kept = [(e.seq, e.event) for e in page.events if e.seq < first_kept]
        out += kept
        if len(kept) < len(page.events) or not page.events:
            break
        after = page.events[-1].seq
    if limit is not None:
        out = out[:limit]
    return Archived(out, gaps or [])


class NextEvent:
    """Wakes when the feed stores an event with seq > ``after_seq``."""

    def __init__(self, after_seq: int) -> None:
        self.after_seq = after_seq
        self.arrived = asyncio.Event()

    def live(self, seq: int, frame: str, occurred_at: float | None) -> None:
        if seq > self.after_seq:
            self.arrived.set()
