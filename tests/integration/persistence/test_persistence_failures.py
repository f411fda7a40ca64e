"""Outages over a real NATS: a store that goes away delays its view (the breaker opens,
the projector stops following, the lag shows) and the view catches up, complete, when it
returns. (A projector killed
between its write and its ack: ``ProjectionContract``, test_projection_contract.py.)"""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import text

from apex_persistence.hot import HotViews, RedisProjection
from apex_persistence.postgres.db import Database, make_engine
from apex_persistence.postgres.migrate import migrate
from apex_persistence.postgres.projector import PostgresProjection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_runtime import Bus
from tests.integration.persistence.harness import runner, running, until, until_caught_up


async def breaker_opened(runner: ProjectorRunner) -> None:
    async def opened() -> bool:
        return runner.breaker.opened_count > 0

    await until(opened, 20.0)


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
            assert (await LagMonitor(bus, [feeder], {}).measure())["postgres"] == len(second)
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
            assert not feeder.following  # the log waits in JetStream, not in this process
            details: dict[str, float | int | str] = {}
            await LagMonitor(bus, [feeder], details).measure()
            assert details["lag_redis"] == len(second)
            server.resume()
            await until_caught_up(bus, [feeder])
        hot = HotViews(client)
        assert (await hot.run_status(story.tenant_id, str(second[0].run_id)) or {}).get("status") == "failed"
        assert len(await hot.recent_events(story.tenant_id, second[0].thread_id)) == len(second)
    finally:
        server.resume()
        await client.aclose()
