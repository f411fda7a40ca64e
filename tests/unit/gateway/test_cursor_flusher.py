"""The gateway's cursor flusher: every advanced cursor reaches the archive once the
archive answers, a failed flush loses nothing and backs off, a newer ack merges in as
the max, and what is left is flushed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

from apex_contracts import InvalidInput, Unavailable
from apex_contracts.queries import CursorEntry
from apex_gateway.cursor_flusher import CursorFlusher, CursorId

TENANT, OTHER = "ten_01J9AAAAAAAAAAAAAAAAAAAAAA", "ten_01J9BBBBBBBBBBBBBBBBBBBBBB"
USER = "usr_01J9AAAAAAAAAAAAAAAAAAAAAA"
THREADS = [f"thr_01J9AAAAAAAAAAAAAAAAAAAAA{n}" for n in range(3)]


class Archive:
    """Stores like persistence (forward only); fails while ``down`` is set."""

    def __init__(self) -> None:
        self.rows: dict[CursorId, int] = {}
        self.down: Exception | None = None
        self.calls = 0

    async def load(self, cursor: CursorId) -> int:
        return self.rows.get(cursor, 0)

    async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
        self.calls += 1
        if self.down is not None:
            raise self.down
        for e in entries:
            key = (tenant_id, e.user_id, e.thread_id)
            self.rows[key] = max(self.rows.get(key, 0), e.seq)


def flusher(archive: Archive, **options: float) -> tuple[CursorFlusher, Counter, Gauge]:
    registry = CollectorRegistry()
    failures = Counter("flush_failures", "x", ["code"], registry=registry)
    unflushed = Gauge("unflushed", "x", registry=registry)
    flushed = Counter("flushed", "x", registry=registry)
    return (
        CursorFlusher(archive, failures=failures, flushed=flushed, unflushed=unflushed, **options),
        failures,
        unflushed,
    )


async def test_a_failed_flush_keeps_every_cursor_and_merges_newer_acks() -> None:
    archive = Archive()
    cursors, failures, unflushed = flusher(archive)
    a, b, c = ((TENANT, USER, THREADS[0]), (TENANT, USER, THREADS[1]), (OTHER, USER, THREADS[2]))
    cursors.mark(a, 5)
    cursors.mark(a, 3)  # an older ack does not move it back
    cursors.mark(b, 7)
    cursors.mark(c, 2)
    assert (cursors.pending(a), unflushed._value.get()) == (5, 3)

    archive.down = Unavailable("persistence is away")
    assert await cursors.flush() is False
    assert archive.rows == {} and cursors.unflushed == 3
    assert failures.labels("service_unavailable")._value.get() == 2  # one request per tenant
    cursors.mark(a, 9)

    archive.down = None
    assert await cursors.flush() is True
    assert archive.rows == {a: 9, b: 7, c: 2}
    assert (cursors.unflushed, cursors.pending(a), unflushed._value.get()) == (0, 0, 0)
    calls = archive.calls
    assert await cursors.flush() is True and archive.calls == calls  # nothing to send


async def test_a_refused_flush_is_not_retried_forever() -> None:
    archive = Archive()
    cursors, failures, _ = flusher(archive)
    cursors.mark((TENANT, USER, THREADS[0]), 4)
    archive.down = InvalidInput("never acceptable")
    assert await cursors.flush() is True
    assert cursors.unflushed == 0 and failures.labels("invalid_request")._value.get() == 1


async def test_run_backs_off_while_failing_and_flushes_at_shutdown() -> None:
    archive = Archive()
    cursors, _, _ = flusher(archive, every_s=0.05, max_backoff_s=0.4)
    stop = asyncio.Event()
    task = asyncio.create_task(cursors.run(stop))
    archive.down = Unavailable("persistence is away")
    cursors.mark((TENANT, USER, THREADS[0]), 1)
    await asyncio.sleep(1.0)
    # 0.05 s apart when healthy would be ~20 attempts; doubling to 0.4 s is a handful.
    assert 2 <= archive.calls <= 6 and archive.rows == {}
    archive.down = None
    cursors.mark((TENANT, USER, THREADS[1]), 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert archive.rows == {(TENANT, USER, THREADS[0]): 1, (TENANT, USER, THREADS[1]): 2}


async def test_a_flush_cut_short_keeps_what_it_had_not_stored() -> None:
    class Stuck(Archive):
        async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
            await asyncio.Event().wait()

    cursors, _, _ = flusher(Stuck())
    cursors.mark((TENANT, USER, THREADS[0]), 3)
    task = asyncio.create_task(cursors.flush())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (cursors.unflushed, cursors.pending((TENANT, USER, THREADS[0]))) == (1, 3)
