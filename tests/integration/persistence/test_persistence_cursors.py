"""Delivery cursors in Postgres through the read API (real NATS, Postgres, Redis, chdb):
``cursor.flush`` only ever moves a cursor forward, ``cursor.get`` reads it (0 when none,
and only the caller's tenant), and erasing a thread or a user deletes its cursors and
refuses later flushes of them. ``CursorContract`` runs on ``CursorStore`` directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from apex_contracts import InvalidInput, new_id
from apex_contracts.queries import (
    Q_CURSOR_FLUSH,
    Q_CURSOR_GET,
    CursorEntry,
    CursorFlush,
    CursorGet,
    CursorPosition,
    CursorsStored,
)
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.bootstrap import PersistenceService
from apex_persistence.postgres.cursors import CursorStore
from apex_persistence.postgres.db import Database
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus
from tests.integration.persistence.cursor_contract import CursorContract, CursorsUnderTest
from tests.integration.persistence.cursor_contract import CursorId as CursorIdentity


@pytest.fixture
async def service(
    server_factory: Any, pg_dsn: str, redis_url: str, analytics: ChdbStore
) -> AsyncIterator[PersistenceService]:
    settings = PersistenceSettings(
        nats_url=server_factory("nats").url,
        postgres_dsn=pg_dsn,
        redis_url=redis_url,
        persistence_port=0,
        instance_id="persistence-cursors",
        clickhouse_database=analytics.database,
        log_format="text",
        eraser_every_s=0.2,
    )
    running = PersistenceService(settings, analytics=analytics)
    await running.start()
    yield running
    await running.stop()


async def flush(bus: Bus, tenant_id: str, *entries: tuple[str, str, int]) -> int:
    request = CursorFlush(
        tenant_id=tenant_id,
        entries=[CursorEntry(user_id=user, thread_id=thread, seq=seq) for user, thread, seq in entries],
    )
    return (await bus.query(Q_CURSOR_FLUSH, request, CursorsStored)).stored


async def cursor(bus: Bus, tenant_id: str, user_id: str, thread_id: str) -> int:
    query = CursorGet(tenant_id=tenant_id, user_id=user_id, thread_id=thread_id)
    return (await bus.query(Q_CURSOR_GET, query, CursorPosition)).seq


async def test_a_cursor_only_moves_forward_and_stays_in_its_tenant(service: PersistenceService) -> None:
    bus = service.host.bus
    tenant, user, first, second = new_id("ten"), new_id("usr"), new_id("thr"), new_id("thr")
    assert await cursor(bus, tenant, user, first) == 0  # nothing stored is a legitimate 0

    assert await flush(bus, tenant, (user, first, 10), (user, second, 5)) == 2
    assert (await cursor(bus, tenant, user, first), await cursor(bus, tenant, user, second)) == (10, 5)
    assert await flush(bus, tenant, (user, first, 7)) == 0  # an older flush arriving late
    assert await flush(bus, tenant, (user, first, 10)) == 0  # the same flush again
    assert await cursor(bus, tenant, user, first) == 10
    assert await flush(bus, tenant, (user, first, 15), (user, first, 13), (user, second, 6)) == 2
    assert (await cursor(bus, tenant, user, first), await cursor(bus, tenant, user, second)) == (15, 6)

    # Another tenant naming the same user and thread sees nothing and changes nothing.
    other = new_id("ten")
    assert await cursor(bus, other, user, first) == 0
    assert await flush(bus, other, (user, first, 99)) == 1
    assert await cursor(bus, tenant, user, first) == 15
    async with service.stores.db.reader(tenant) as conn:  # row-level security, without a filter
        rows = (await conn.execute(text("SELECT tenant_id, seq FROM apex.delivery_cursors"))).all()
    assert sorted(rows) == [(tenant, 6), (tenant, 15)]

    with pytest.raises(InvalidInput):
        await bus.query_raw(Q_CURSOR_FLUSH, CursorGet(tenant_id=tenant, user_id=user, thread_id=first))


async def test_erasure_deletes_cursors_and_refuses_later_flushes(
    service: PersistenceService, new_story: Any, eventually: Any
) -> None:
    bus = service.host.bus
    alice = new_story()
    bob = new_story(alice.tenant_id)
    tenant = alice.tenant_id
    doomed, kept, bobs = alice.run(), alice.run(), bob.run()
    await alice.publish(bus, doomed + kept + bobs)
    doomed_id, kept_id, bobs_id = doomed[0].thread_id, kept[0].thread_id, bobs[0].thread_id
    assert await flush(bus, tenant, (alice.user_id, doomed_id, 3), (alice.user_id, kept_id, 8)) == 2
    assert await flush(bus, tenant, (bob.user_id, bobs_id, 20)) == 1

    await alice.publish(bus, [alice.delete(doomed_id, erase=True)])

    async def thread_cursor_gone() -> bool:
        return await cursor(bus, tenant, alice.user_id, doomed_id) == 0

    await eventually(thread_cursor_gone)
    assert await cursor(bus, tenant, alice.user_id, kept_id) == 8
    assert await flush(bus, tenant, (alice.user_id, doomed_id, 4)) == 0  # a gateway still holding it
    assert await cursor(bus, tenant, alice.user_id, doomed_id) == 0

    await alice.publish(bus, [alice.erase_user()])

    async def user_cursors_gone() -> bool:
        return await cursor(bus, tenant, alice.user_id, kept_id) == 0

    await eventually(user_cursors_gone)
    assert await flush(bus, tenant, (alice.user_id, kept_id, 9), (alice.user_id, new_id("thr"), 1)) == 0
    async with service.stores.db.writer() as conn:
        left = (await conn.execute(text("SELECT user_id, thread_id, seq FROM apex.delivery_cursors"))).all()
    assert left == [(bob.user_id, bobs_id, 20)]


class PostgresCursors:
    """``CursorStore`` called directly: every flush is durable, there is no fast copy."""

    def __init__(self, store: CursorStore) -> None:
        self.store = store

    async def advance(self, cursor: CursorIdentity, seq: int) -> int:
        tenant, user, thread = cursor
        await self.store.flush(
            CursorFlush(tenant_id=tenant, entries=[CursorEntry(user_id=user, thread_id=thread, seq=seq)])
        )
        return await self.get(cursor)

    async def get(self, cursor: CursorIdentity) -> int:
        tenant, user, thread = cursor
        return (await self.store.get(CursorGet(tenant_id=tenant, user_id=user, thread_id=thread))).seq

    async def persist(self) -> None:
        return None

    async def lose_fast_copy(self) -> None:
        return None


class TestPostgresCursors(CursorContract):
    @pytest.fixture
    def cursors(self, pg: Database) -> CursorsUnderTest:
        return PostgresCursors(CursorStore(pg))
