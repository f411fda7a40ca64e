"""The projectors of one process share one consumer of the log (``SharedFollow``) over a
real NATS, Postgres and Redis: level, they cost the stream one consumer; a store that
goes away does not hold the other back; back, it catches up on a consumer of its own,
then joins the shared one again, and both views are complete."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from sqlalchemy import text

from apex_contracts.streams import APEX_EVT
from apex_persistence.hot import HotViews, RedisProjection
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.projector import PostgresProjection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_persistence.projection.shared import SharedFollow
from apex_runtime import Bus
from tests.integration.persistence.harness import runner, running, until, until_caught_up


async def consumers(bus: Bus) -> int:
    info = orjson.loads(await bus.request(f"$JS.API.STREAM.INFO.{APEX_EVT.name}", b"", timeout=2.0))
    return int(info["state"]["consumer_count"])


async def test_level_projectors_share_one_consumer_and_a_store_outage_holds_no_other_back(
    bus: Bus, pg: Database, server_factory: Any, story: Any
) -> None:
    server = server_factory("redis")
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    shared = SharedFollow(bus.follow, retry_s=0.2)
    postgres = runner(bus, PostgresProjection(pg), shared=shared)
    hot = runner(bus, RedisProjection(client), shared=shared)
    both: list[ProjectorRunner] = [postgres, hot]
    first, second, third = story.run(), story.run(end="failed"), story.run()
    try:
        async with running(both):

            async def following() -> bool:
                return all(r.following for r in both)

            await until(following, 10.0)  # both level at seq 0, before anything is stored
            for event in first:
                await bus.publish_event(event)
            await until_caught_up(bus, both)
            assert await consumers(bus) == 1
            assert shared.private_follows == 0

            server.pause()
            half = len(second) // 2
            for event in second[:half]:
                await bus.publish_event(event)

            async def refused() -> bool:
                return hot.breaker.opened_count > 0

            await until(refused, 20.0)  # the batch in hand: the first half
            for event in second[half:]:
                await bus.publish_event(event)
            await until_caught_up(bus, [postgres])  # not held back by the store that is away
            lags = await LagMonitor(bus, both, {}).measure()
            assert lags["redis"] == len(second)

            server.resume()
            await until_caught_up(bus, both)
            for event in third:
                await bus.publish_event(event)
            await until_caught_up(bus, both)

            async def one_consumer_again() -> bool:
                return await consumers(bus) == 1

            await until(one_consumer_again, 10.0)
            assert shared.private_follows >= 1  # it came back behind: on a consumer of its own
        async with pg.writer() as conn:
            total = len(first) + len(second) + len(third)
            assert await conn.scalar(text("SELECT count(*) FROM apex.events")) == total
        views = HotViews(client)
        failed = await views.run_status(story.tenant_id, str(second[0].run_id)) or {}
        assert failed.get("status") == "failed"
        thread_events = await views.recent_events(story.tenant_id, third[0].thread_id)
        assert len(thread_events) == len(third)
    finally:
        server.resume()
        await client.aclose()
