"""A thread's history as every delivery path reads it (socket replay, the events endpoint,
SSE): what the stream no longer holds (retention) comes from the Postgres archive, with
its original seq and id; when the archive cannot answer, the caller says
``replay_incomplete`` with the first seq still available, never starts later silently.

``NextEvent`` is how a long-poll waits: a listener on the thread's live feed (one per
thread per gateway, ``ws/feeds.py``) that wakes when an event after a seq is stored."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apex_contracts import ApexError, ErrorCode
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsArchive, EventsPage
from apex_gateway.tokens import Principal
from apex_runtime import Bus

log = logging.getLogger(__name__)
ARCHIVE_PAGE = 1000


class ReplayIncomplete(ApexError):
    """Events before ``first_seq`` cannot be read now (the archive did not answer)."""

    default_code = ErrorCode.REPLAY_INCOMPLETE

    def __init__(self, thread_id: str, first_seq: int) -> None:
        super().__init__(
            f"Events before seq {first_seq} cannot be replayed right now; history resumes there. "
            f"Ask again later, or with after_seq={first_seq - 1} to skip them.",
            retryable=True,
            details={"thread_id": thread_id, "first_seq": first_seq},
        )
        self.first_seq = first_seq


async def archived_events(
    bus: Bus, who: Principal, thread_id: str, after_seq: int, first_kept: int, limit: int | None = None
) -> tuple[bool, list[tuple[int, dict[str, Any]]]]:
    """Archived events with seq in (after_seq, first_kept), oldest first, at most
    ``limit``: what the stream no longer holds. (False, partial) when the archive cannot
    answer."""
    out: list[tuple[int, dict[str, Any]]] = []
    after = after_seq
    while after < first_kept - 1 and (limit is None or len(out) < limit):
        query = EventsArchive(
            tenant_id=who.tenant_id,
            user_id=who.user_id,
            thread_id=thread_id,
            after_seq=after,
            limit=ARCHIVE_PAGE,
        )
        try:
            page = await bus.query(Q_EVENTS_ARCHIVE, query, EventsPage)
        except ApexError as exc:
            log.warning("archive read of %s failed: %s", thread_id, exc.message)
            return False, out
        kept = [(e.seq, e.event) for e in page.events if e.seq < first_kept]
        out += kept
        if len(kept) < len(page.events) or not page.events:
            break
        after = page.events[-1].seq
    return True, out if limit is None else out[:limit]


class NextEvent:
    """Wakes when the feed stores an event with seq > ``after_seq``."""

    def __init__(self, after_seq: int) -> None:
        self.after_seq = after_seq
        self.arrived = asyncio.Event()

    def live(self, seq: int, frame: str, occurred_at: float | None) -> None:
        if seq > self.after_seq:
            self.arrived.set()
