"""The gateway's delivery cursors over a real Redis (Valkey), with the archive in memory:
a key Redis lost is read back from the archive (and from what this gateway has not
flushed yet) and written back; an archive that cannot answer is an error, never 0; an
ack on a lost key never moves the cursor back. ``CursorContract`` runs on them with
persistence's ``CursorStore`` on a real Postgres as the archive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge

from apex_contracts import ApexError, ErrorCode, Unavailable, new_id
from apex_contracts.queries import CursorEntry, CursorFlush, CursorGet
from apex_gateway.cursor_flusher import CursorArchive, CursorFlusher, CursorId
from apex_gateway.cursors import DeliveryCursors, cursor_key
from apex_gateway.tokens import Principal
from apex_gateway.ws.acks import CursorWrites
from apex_persistence.postgres.cursors import CursorStore
from apex_persistence.postgres.db import Database, make_engine
from apex_persistence.postgres.migrate import migrate
from apex_runtime import CircuitBreaker
from tests.integration.persistence.cursor_contract import CursorContract, CursorsUnderTest


class Archive:
    def __init__(self) -> None:
        self.rows: dict[CursorId, int] = {}
        self.down = False

    async def load(self, cursor: CursorId) -> int:
        if self.down:
            raise Unavailable("persistence did not answer in time")
        return self.rows.get(cursor, 0)

    async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
        if self.down:
            raise Unavailable("persistence did not answer in time")
        for e in entries:
            key = (tenant_id, e.user_id, e.thread_id)
            self.rows[key] = max(self.rows.get(key, 0), e.seq)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def cursors(redis: aioredis.Redis, archive: CursorArchive) -> tuple[DeliveryCursors, CursorFlusher, Counter]:
    registry = CollectorRegistry()
    flusher = CursorFlusher(
        archive,
        failures=Counter("failures", "x", ["code"], registry=registry),
        flushed=Counter("flushed", "x", registry=registry),
        unflushed=Gauge("unflushed", "x", registry=registry),
    )
    restores = Counter("restores", "x", ["outcome"], registry=registry)
    return DeliveryCursors(redis, CircuitBreaker("redis"), archive, flusher, restores), flusher, restores


def principal() -> Principal:
    return Principal(new_id("usr"), new_id("ten"), new_id("ses"), (), 0)


async def test_a_lost_key_is_restored_from_the_archive(redis: aioredis.Redis) -> None:
    archive = Archive()
    store, flusher, restores = cursors(redis, archive)
    who, thread = principal(), new_id("thr")
    assert await store.get(who, thread) == 0  # never acked, nothing stored: a real 0
    assert await store.advance(who, thread, 7) == 7
    assert await store.advance(who, thread, 5) == 7
    assert await flusher.flush()
    assert archive.rows == {(who.tenant_id, who.user_id, thread): 7}

    await redis.delete(cursor_key(who, thread))
    assert await store.get(who, thread) == 7
    assert await redis.get(cursor_key(who, thread)) == b"7"  # written back
    assert restores.labels("found")._value.get() == 1

    # Acked but not flushed yet when Redis lost it: this gateway still knows.
    assert await store.advance(who, thread, 9) == 9
    await redis.delete(cursor_key(who, thread))
    assert await store.get(who, thread) == 9


async def test_an_archive_that_cannot_answer_is_an_error_not_zero(redis: aioredis.Redis) -> None:
    archive = Archive()
    store, flusher, restores = cursors(redis, archive)
    who, thread = principal(), new_id("thr")
    archive.rows[(who.tenant_id, who.user_id, thread)] = 12
    archive.down = True
    with pytest.raises(Unavailable) as refused:
        await store.get(who, thread)
    assert refused.value.code == ErrorCode.STORE_UNAVAILABLE and refused.value.retryable
    assert restores.labels("unavailable")._value.get() == 1

    # An older ack meanwhile: held for the flush, not written over the lost key.
    assert await store.advance(who, thread, 4) == 4
    assert await redis.get(cursor_key(who, thread)) is None
    archive.down = False
    assert await flusher.flush()
    assert await store.get(who, thread) == 12


async def test_an_ack_on_a_lost_key_never_moves_the_cursor_back(redis: aioredis.Redis) -> None:
    archive = Archive()
    store, _, _ = cursors(redis, archive)
    who, thread = principal(), new_id("thr")
    archive.rows[(who.tenant_id, who.user_id, thread)] = 30
    assert await store.advance(who, thread, 10) == 30  # a device that resumed from an older seq
    assert await store.get(who, thread) == 30
    assert await store.advance(who, thread, 31) == 31


async def test_forgetting_an_erased_thread_drops_its_key(redis: aioredis.Redis) -> None:
    archive = Archive()
    store, _, _ = cursors(redis, archive)
    who, thread, other = principal(), new_id("thr"), new_id("thr")
    await store.advance(who, thread, 4)
    await store.advance(who, other, 6)
    await store.forget(who, thread)
    assert await redis.get(cursor_key(who, thread)) is None
    assert await redis.get(cursor_key(who, other)) == b"6"  # only that thread's


async def test_acks_are_stored_behind_the_frames_on_a_real_redis(redis: aioredis.Redis) -> None:
    """The first ack of a thread Redis has no key for reads the stored cursor first; the
    connection's ``CursorWrites`` does that behind its frames, coalescing later acks."""
    archive = Archive()
    store, _, _ = cursors(redis, archive)
    who, thread, other = principal(), new_id("thr"), new_id("thr")
    archive.rows[(who.tenant_id, who.user_id, thread)] = 4
    gate = asyncio.Event()
    load = archive.load

    async def slow_load(cursor: CursorId) -> int:
        await gate.wait()  # persistence answering slowly
        return await load(cursor)

    archive.load = slow_load  # type: ignore[method-assign]
    refused: list[tuple[ApexError, str | None]] = []
    acks = CursorWrites(
        lambda t, seq: store.advance(who, t, seq), lambda exc, ref: refused.append((exc, ref))
    )
    acks.ask(thread, 2, "a1")
    acks.ask(thread, 9, "a2")
    acks.ask(other, 3, "a3")
    await asyncio.sleep(0.05)
    assert acks.pending(thread) and await redis.get(cursor_key(who, thread)) is None
    gate.set()
    await asyncio.wait_for(acks.settled(), 10)
    assert await redis.get(cursor_key(who, thread)) == b"9"
    assert await redis.get(cursor_key(who, other)) == b"3"
    assert refused == []

    dead = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    try:
        down, _, _ = cursors(dead, Archive())
        acks = CursorWrites(
            lambda t, seq: down.advance(who, t, seq), lambda exc, ref: refused.append((exc, ref))
        )
        acks.ask(thread, 10, "a4")
        await asyncio.wait_for(acks.close(10), 15)
    finally:
        await dead.aclose()
    assert [(exc.code, ref) for exc, ref in refused] == [(ErrorCode.STORE_UNAVAILABLE, "a4")]


async def test_a_new_threads_cursor_starts_at_zero_without_asking_the_archive(redis: aioredis.Redis) -> None:
    archive = Archive()
    archive.down = True  # asked, it would fail: it must not be asked
    store, _, restores = cursors(redis, archive)
    who, thread, acked = principal(), new_id("thr"), new_id("thr")
    await store.start_fresh(who, thread)
    assert await redis.get(cursor_key(who, thread)) == b"0"
    assert await store.advance(who, thread, 5) == 5
    await redis.set(cursor_key(who, acked), 7)
    await store.start_fresh(who, acked)  # a key that exists is left as it is
    assert await redis.get(cursor_key(who, acked)) == b"7"
    assert restores.labels("unavailable")._value.get() == 0


class StoredCursors:
    """``CursorArchive`` over persistence's ``CursorStore`` on a real Postgres (what the
    read API's ``cursor.get`` and ``cursor.flush`` run), without the bus between."""

    def __init__(self, store: CursorStore) -> None:
        self.store = store

    async def load(self, cursor: CursorId) -> int:
        tenant, user, thread = cursor
        return (await self.store.get(CursorGet(tenant_id=tenant, user_id=user, thread_id=thread))).seq

    async def save(self, tenant_id: str, entries: list[CursorEntry]) -> None:
        await self.store.flush(CursorFlush(tenant_id=tenant_id, entries=entries))


class GatewayCursors:
    """The gateway's ``DeliveryCursors`` on Redis, flushed to Postgres."""

    def __init__(self, redis: aioredis.Redis, archive: StoredCursors) -> None:
        self.redis = redis
        self.store, self.flusher, _ = cursors(redis, archive)

    async def advance(self, cursor: CursorId, seq: int) -> int:
        tenant, user, thread = cursor
        return await self.store.advance(Principal(user, tenant, new_id("ses"), (), 0), thread, seq)

    async def get(self, cursor: CursorId) -> int:
        tenant, user, thread = cursor
        return await self.store.get(Principal(user, tenant, new_id("ses"), (), 0), thread)

    async def persist(self) -> None:
        assert await self.flusher.flush()

    async def lose_fast_copy(self) -> None:
        await self.redis.flushdb()  # Redis restarted without persistence


class TestGatewayCursors(CursorContract):
    @pytest.fixture
    async def cursors(self, redis: aioredis.Redis, pg_dsn: str) -> AsyncIterator[CursorsUnderTest]:
        await migrate(pg_dsn)
        db = Database(make_engine(pg_dsn, pool_size=2))
        yield GatewayCursors(redis, StoredCursors(CursorStore(db)))
        await db.close()
