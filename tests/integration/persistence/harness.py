"""Helpers of the persistence integration tests: projector runners over a real NATS, and
dumps of every view for comparisons (a rebuild against incremental projection, a
redelivery against one delivery)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text

from apex_contracts.streams import PROJECTED
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.postgres.db import Database
from apex_persistence.projection.ports import Projection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_runtime import Bus, CircuitBreaker

VIEW_TABLES = ("threads", "messages", "runs", "events")


def runner(bus: Bus, projection: Projection, **options: Any) -> ProjectorRunner:
    """A runner following the log from the projection's checkpoint, quick to retry."""
    store = projection.name.removesuffix("-rebuild")
    breaker = CircuitBreaker(projection.name, threshold=2, reset_after_s=0.5)
    options.setdefault("wait_s", 0.2)
    return ProjectorRunner(bus, projection, PROJECTED[store], breaker, max_backoff_s=0.5, **options)


@contextlib.asynccontextmanager
async def running(runners: list[ProjectorRunner]) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def until(check: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


async def until_caught_up(bus: Bus, runners: list[ProjectorRunner], timeout: float = 30.0) -> None:
    monitor = LagMonitor(bus, runners, {})

    async def caught_up() -> bool:
        lags = await monitor.measure()  # a consumer not created yet has no lag to show
        return len(lags) == len(runners) and not any(lags.values())

    await until(caught_up, timeout)


async def dump_postgres(db: Database) -> dict[str, list[dict[str, Any]]]:
    async with db.writer() as conn:
        return {
            table: [
                dict(r)
                for r in (await conn.execute(text(f"SELECT * FROM apex.{table} ORDER BY id"))).mappings()
            ]
            for table in VIEW_TABLES
        }


async def snapshot_redis(
    client: aioredis.Redis, *, skip: tuple[bytes, ...] = (b"apex:projection:",)
) -> dict[bytes, Any]:
    """Every ``apex:*`` key with its value (TTLs aside), checkpoints aside."""
    state: dict[bytes, Any] = {}
    for key in sorted(await client.keys("apex:*")):
        if key.startswith(skip):
            continue
        kind = await client.type(key)
        if kind == b"hash":
            state[key] = await client.hgetall(key)
        elif kind == b"zset":
            state[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            state[key] = sorted(await client.smembers(key))
        else:
            state[key] = await client.get(key)
    return state


async def dump_clickhouse(store: AnalyticsStore) -> dict[str, list[dict[str, Any]]]:
    return {
        "events": await store.select("SELECT * FROM $db.events FINAL ORDER BY tenant_id, id", {}),
        "erased_threads": await store.select(
            "SELECT * FROM $db.erased_threads FINAL ORDER BY tenant_id, thread_id", {}
        ),
        "erased_users": await store.select(
            "SELECT * FROM $db.erased_users FINAL ORDER BY tenant_id, user_id", {}
        ),
    }


class CountingStore:
    """The real store, counting the queries that reach it and the inserts, per table."""

    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store
        self.selects = 0
        self.inserts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def select(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.selects += 1
        return await self._store.select(sql, params)

    async def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.inserts[table] += 1
        await self._store.insert(table, rows)
