"""Crashes and outages over a real NATS: a projector killed between its write and its
ack, many times, leaves no duplicate; a store that goes away delays its view (the
breaker opens, the lag shows) and the view catches up, complete, when it returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.hot import HotViews, RedisProjection
from apex_persistence.postgres.db import Database, make_engine
from apex_persistence.postgres.migrate import migrate
from apex_persistence.postgres.projector import PostgresProjection
from apex_persistence.projection.delivery import Delivery
from apex_persistence.projection.ports import Projection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_runtime import Bus
from tests.integration.persistence.harness import runner, running, until, until_caught_up


class DiesAfterWrite:
    """Writes the batch, then hangs until it is killed: the crash between write and ack."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name = inner.name
        self.failures = inner.failures
        self.written = asyncio.Event()

    async def position(self) -> int:
        return await self.inner.position()

    async def apply(self, batch: Sequence[Delivery]) -> None:
        await self.inner.apply(batch)
        self.written.set()
        await asyncio.Event().wait()


@pytest.fixture
async def bus(server_factory: Any) -> AsyncIterator[Bus]:
    nats = server_factory("nats")
    connected = await Bus.connect(nats.url, "persistence-failures-test")
    await connected.ensure_topology()
    yield connected
    await connected.close()


async def breaker_opened(runner: ProjectorRunner) -> None:
    async def opened() -> bool:
        return runner.breaker.opened_count > 0

    await until(opened, 20.0)


async def test_killed_between_write_and_ack_many_times(
    bus: Bus,
    pg: Database,
    redis_client: aioredis.Redis,
    analytics: ChdbStore,
    story: Any,
) -> None:
    events = story.threads(count=3, runs_per_thread=2)
    for event in events:
        await bus.publish_event(event)
    stores: list[Projection] = [
        PostgresProjection(pg),
        RedisProjection(redis_client),
        ClickHouseProjection(analytics),
    ]

    for _kill in range(4):
        doomed = [DiesAfterWrite(store) for store in stores]
        tasks = [asyncio.create_task(runner(bus, d, batch_size=9).run(asyncio.Event())) for d in doomed]
        await asyncio.wait_for(asyncio.gather(*(d.written.wait() for d in doomed)), 15)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    survivors = [runner(bus, store) for store in stores]
    async with running(survivors):
        await until_caught_up(bus, survivors)

    async with pg.writer() as conn:
        counts = {
            t: await conn.scalar(text(f"SELECT count(*) FROM apex.{t}"))
            for t in ("events", "runs", "threads")
        }
        tool_calls = await conn.scalar(text("SELECT sum(tool_calls) FROM apex.runs"))
        messages = await conn.scalar(text("SELECT count(*) FROM apex.messages"))
    assert counts == {"events": len(events), "runs": 6, "threads": 3}
    assert tool_calls == sum(1 for e in events if e.type == "tool_executing")
    assert messages == 6 + sum(1 for e in events if e.type == "run.completed")
    final = await analytics.select("SELECT count() AS n FROM $db.events FINAL", {})
    stored = await analytics.select("SELECT count() AS n FROM $db.events", {})
    assert int(final[0]["n"]) == len(events) <= int(stored[0]["n"])
    hot = HotViews(redis_client)
    for event in events:
        if event.type in ("run.completed", "run.failed", "run.cancelled"):
            status = await hot.run_status(story.tenant_id, str(event.run_id))
            assert status is not None and status["status"] in (
                "completed",
                "needs_data",
                "failed",
                "cancelled",
            )


async def test_postgres_outage_delays_the_view_then_it_catches_up(
    bus: Bus,
    server_factory: Any,
    story: Any,
) -> None:
    server = server_factory("postgres")
    await migrate(server.url)
    # The test server runs with synchronous_commit off; a killed server would then lose
    # commits it had acknowledged, which no projector can make up for.
    admin = await asyncpg.connect(server.url)
    await admin.execute("ALTER DATABASE apex SET synchronous_commit TO on")
    await admin.close()
    db = Database(make_engine(server.url, pool_size=2))
    feeder = runner(bus, PostgresProjection(db))
    first, second = story.run(), story.run()
    try:
        async with running([feeder]):
            for event in first:
                await bus.publish_event(event)
            await until_caught_up(bus, [feeder])
            server.kill()
            for event in second:
                await bus.publish_event(event)
            await breaker_opened(feeder)
            assert (await LagMonitor(bus.js, [feeder], {}).measure())["postgres"] == len(second)
            server.start()
            await until_caught_up(bus, [feeder])
        async with db.writer() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM apex.events")) == len(first) + len(second)
            assert await conn.scalar(text("SELECT count(*) FROM apex.runs WHERE status = 'completed'")) == 2
    finally:
        await db.close()


async def test_redis_outage_delays_the_view_then_it_catches_up(
    bus: Bus, server_factory: Any, story: Any
) -> None:
    server = server_factory("redis")
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    feeder = runner(bus, RedisProjection(client))
    first, second = story.run(), story.run(end="failed")
    try:
        async with running([feeder]):
            for event in first:
                await bus.publish_event(event)
            await until_caught_up(bus, [feeder])
            server.pause()
            for event in second:
                await bus.publish_event(event)
            await breaker_opened(feeder)
            details: dict[str, float | int | str] = {}
            await LagMonitor(bus.js, [feeder], details).measure()
            assert details["lag_redis"] == len(second)
            server.resume()
            await until_caught_up(bus, [feeder])
        hot = HotViews(client)
        assert (await hot.run_status(story.tenant_id, str(second[0].run_id)) or {}).get("status") == "failed"
        assert len(await hot.recent_events(story.tenant_id, second[0].thread_id)) == len(second)
    finally:
        server.resume()
        await client.aclose()
