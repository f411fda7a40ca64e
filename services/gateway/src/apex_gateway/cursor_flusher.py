"""Durable delivery cursors: Redis holds them hot, persistence keeps them in Postgres.

Every advanced cursor is marked unflushed here; ``CursorFlusher.run`` sends them to
persistence (``cursor.flush``, one request per tenant and at most ``CURSOR_FLUSH_MAX``
entries) every ``every_s`` and once more at shutdown. A flush that fails keeps its
cursors (a newer ack of the same thread merges in as the max) and the next one waits
longer, doubling up to ``max_backoff_s``. Persistence stores a cursor only if it moves
forward, so a flush repeated after a lost reply changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Protocol

import nats.errors
from prometheus_client import Counter, Gauge

from apex_contracts import ApexError, Unavailable
from apex_contracts.queries import (
    CURSOR_FLUSH_MAX,
    Q_CURSOR_FLUSH,
    Q_CURSOR_GET,
    CursorEntry,
    CursorFlush,
    CursorGet,
    CursorPosition,
    CursorsStored,
)
from apex_runtime import Bus, CircuitBreaker

log = logging.getLogger(__name__)

CursorId = tuple[str, str, str]  # tenant, user, thread
STORE_FAILURES: tuple[type[BaseException], ...] = (ApexError, nats.errors.Error)
# What counts against the breaker: persistence or the bus being away, not a refusal.
_OUTAGES: tuple[type[BaseException], ...] = (Unavailable, nats.errors.Error)


class CursorArchive(Protocol):
    """Where cursors outlive Redis."""

    async def load(self, cursor: CursorId) -> int:
        """The stored seq, 0 when none is stored; raises one of ``STORE_FAILURES``."""

    async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
        """Stores the entries (each only forward); raises one of ``STORE_FAILURES``."""


class PersistedCursors:
    """``CursorArchive`` over persistence's read API, behind a circuit breaker so that a
    persistence outage costs one quick refusal per call, not a timeout."""

    def __init__(self, bus: Bus, breaker: CircuitBreaker, *, timeout_s: float = 2.0) -> None:
        self.bus = bus
        self.breaker = breaker
        self.timeout_s = timeout_s

    async def load(self, cursor: CursorId) -> int:
        tenant_id, user_id, thread_id = cursor
        query = CursorGet(tenant_id=tenant_id, user_id=user_id, thread_id=thread_id)
        position = await self.breaker.call(
            lambda: self.bus.query(Q_CURSOR_GET, query, CursorPosition, timeout=self.timeout_s),
            _OUTAGES,
        )
        return position.seq

    async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
        request = CursorFlush(tenant_id=tenant_id, entries=entries)
        await self.breaker.call(
            lambda: self.bus.query(Q_CURSOR_FLUSH, request, CursorsStored, timeout=self.timeout_s),
            _OUTAGES,
        )


class CursorFlusher:
    """The cursors advanced since their last flush, and the task that flushes them."""

    def __init__(
        self,
        archive: CursorArchive,
        *,
        failures: Counter,
        flushed: Counter,
        unflushed: Gauge,
        every_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.archive = archive
        self.every_s = every_s
        self.max_backoff_s = max_backoff_s
        self._failures = failures
        self._flushed = flushed
        self._unflushed = unflushed
        self._dirty: dict[CursorId, int] = {}
        self._sending: dict[CursorId, int] = {}

    def mark(self, cursor: CursorId, seq: int) -> None:
        """``cursor`` is at ``seq`` (or further) and persistence may not know it yet."""
        if seq > self._dirty.get(cursor, 0):
            self._dirty[cursor] = seq
        self._unflushed.set(self.unflushed)

    def pending(self, cursor: CursorId) -> int:
        """The seq this gateway holds for ``cursor`` that may not be stored yet; 0 if none."""
        return max(self._dirty.get(cursor, 0), self._sending.get(cursor, 0))

    @property
    def unflushed(self) -> int:
        return len(self._dirty.keys() | self._sending.keys())

    async def flush(self) -> bool:
        """One pass over every unflushed cursor; True when all of them were stored.
        What could not be stored stays unflushed for the next pass."""
        if not self._dirty:
            return True
        self._sending, self._dirty = self._dirty, {}
        by_tenant: dict[str, list[CursorEntry]] = defaultdict(list)
        for (tenant_id, user_id, thread_id), seq in self._sending.items():
            by_tenant[tenant_id].append(CursorEntry(user_id=user_id, thread_id=thread_id, seq=seq))
        complete = True
        try:
            for tenant_id, entries in by_tenant.items():
                for start in range(0, len(entries), CURSOR_FLUSH_MAX):
                    chunk = entries[start : start + CURSOR_FLUSH_MAX]
                    if await self._save(tenant_id, chunk):
                        for entry in chunk:
                            del self._sending[(tenant_id, entry.user_id, entry.thread_id)]
                    else:
                        complete = False
        finally:
            # Whatever was not stored (a failure, or this task cancelled) stays unflushed.
            sent, self._sending = self._sending, {}
            for cursor, seq in sent.items():
                self.mark(cursor, seq)
            self._unflushed.set(self.unflushed)
        return complete

    async def _save(self, tenant_id: str, chunk: list[CursorEntry]) -> bool:
        """True when persistence stored the chunk (or refused it for good)."""
        try:
            await self.archive.save(tenant_id, chunk)
        except STORE_FAILURES as exc:
            code = exc.code.value if isinstance(exc, ApexError) else "bus_error"
            self._failures.labels(code).inc()
            if isinstance(exc, ApexError) and not exc.retryable:
                # Refused as invalid, it would be refused on every retry; Redis still
                # holds these cursors.
                log.error("dropping %d cursors of %s: %s (%s)", len(chunk), tenant_id, exc.message, code)
                return True
            log.warning("cursor flush of %s failed (%d kept): %r", tenant_id, len(chunk), exc)
            return False
        self._flushed.inc(len(chunk))
        return True

    async def run(self, stop: asyncio.Event, *, final_attempts: int = 3) -> None:
        """Flushes every ``every_s`` (longer after failures) until ``stop``, then once more."""
        delay = self.every_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            delay = (
                self.every_s if await self.flush() else min(max(delay, self.every_s) * 2, self.max_backoff_s)
            )
        for attempt in range(final_attempts):
            if await self.flush():
                return
            await asyncio.sleep(0.2 * 2**attempt)
        if self.unflushed:
            log.error("%d delivery cursors not flushed at shutdown (Redis still holds them)", self.unflushed)
