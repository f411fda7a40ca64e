"""``ProjectionContract`` run against each store the log is projected into: Postgres
(history), Redis (hot) and ClickHouse (analytics, on the embedded chdb engine)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar
from unittest import mock

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from chdb import ChdbError
from sqlalchemy import text

from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.hot import RedisProjection
from apex_persistence.postgres import projector as pg_projector
from apex_persistence.postgres.db import Database, PostgresUnavailable
from apex_persistence.postgres.projector import PostgresProjection
from apex_persistence.projection.ports import Projection
from tests.integration.persistence.harness import VIEW_TABLES, dump_clickhouse, dump_postgres, snapshot_redis
from tests.integration.persistence.projection_contract import ProjectionContract, StoreUnderTest


class PostgresHistory:
    """The history projection: the archive row of each event is its tracking record, and
    a batch, its rows and the checkpoint are one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def projection(self) -> Projection:
        return PostgresProjection(self.db)

    async def dump(self) -> Any:
        return await dump_postgres(self.db)

    async def count_events(self) -> int:
        async with self.db.writer() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM apex.events")) or 0)

    async def clear(self) -> None:
        async with self.db.writer() as conn:
            for table in (*VIEW_TABLES, "projection_checkpoints", "archive_coverage"):
                await conn.execute(text(f"DELETE FROM apex.{table}"))

    @contextlib.contextmanager
    def checkpoint_fails(self, projection: Projection) -> Iterator[None]:
        async def unavailable(*_args: Any) -> None:
            raise PostgresUnavailable("the server went away before the checkpoint")

        with mock.patch.object(pg_projector, "_checkpoint", unavailable):
            yield


class RedisHot:
    """The hot projection: each event is a Lua script guarded by its sequence; the
    checkpoint is a ``max`` script sent after them in the same pipeline."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    def projection(self) -> Projection:
        return RedisProjection(self.client)

    async def dump(self) -> Any:
        return await snapshot_redis(self.client)

    async def count_events(self) -> int:
        keys = await self.client.keys("apex:*:thread:*:recent")
        return sum([await self.client.zcard(key) for key in keys])

    async def clear(self) -> None:
        await self.client.flushdb()

    @contextlib.contextmanager
    def checkpoint_fails(self, projection: Projection) -> Iterator[None]:
        async def lost(pipe: Any, _seq: int) -> None:
            await pipe.execute()  # the events' scripts reach the server; the checkpoint does not
            raise redis.exceptions.ConnectionError("connection lost before the checkpoint")

        assert isinstance(projection, RedisProjection)
        with mock.patch.object(projection, "_queue_checkpoint", lost):
            yield


class ClickHouseAnalytics:
    """The analytics projection: ``events`` is a ReplacingMergeTree read with FINAL, so a
    row inserted twice is one row; the checkpoint row is inserted after the events."""

    def __init__(self, store: ChdbStore) -> None:
        self.store = store

    def projection(self) -> Projection:
        return ClickHouseProjection(self.store)

    async def dump(self) -> Any:
        return await dump_clickhouse(self.store)

    async def count_events(self) -> int:
        rows = await self.store.select("SELECT count() AS n FROM $db.events FINAL", {})
        return int(rows[0]["n"])

    async def clear(self) -> None:
        for table in ("events", "projection_checkpoints", "erased_threads", "erased_users"):
            await self.store.command(f"TRUNCATE TABLE $db.{table}")

    @contextlib.contextmanager
    def checkpoint_fails(self, projection: Projection) -> Iterator[None]:
        insert = self.store.insert

        async def failing(table: str, rows: Sequence[Any]) -> None:
            if table == "projection_checkpoints":
                raise ChdbError("the engine failed before the checkpoint")
            await insert(table, rows)

        with mock.patch.object(self.store, "insert", failing):
            yield


class TestPostgresProjection(ProjectionContract):
    atomic_batches: ClassVar[bool] = True

    @pytest.fixture
    def store(self, pg: Database) -> StoreUnderTest:
        return PostgresHistory(pg)


class TestRedisProjection(ProjectionContract):
    @pytest.fixture
    def store(self, redis_client: aioredis.Redis) -> StoreUnderTest:
        return RedisHot(redis_client)


class TestClickHouseProjection(ProjectionContract):
    @pytest.fixture
    async def store(self, analytics: ChdbStore) -> AsyncIterator[StoreUnderTest]:
        yield ClickHouseAnalytics(analytics)
