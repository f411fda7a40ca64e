"""Projectors over a real NATS: one replica at a time projects a store (its lease), a
standby takes over from the store's checkpoint when the holder stops or dies, nothing is
acknowledged, and a store outage stops the follow instead of buffering the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from apex_contracts.streams import APEX_EVT, KV_LEASES
from apex_persistence.hot import HotViews, RedisProjection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_runtime import Bus
from apex_runtime.leases import Leases
from tests.integration.persistence.harness import runner, until, until_caught_up

TTL_S = 2.0


async def replica(bus: Bus, client: aioredis.Redis, name: str) -> ProjectorRunner:
    leases = Leases(await bus.bucket(KV_LEASES), name)
    return runner(bus, RedisProjection(client), leases=leases, lease_ttl_s=TTL_S)


async def until_active(runners: list[ProjectorRunner]) -> ProjectorRunner:
    async def one_active() -> bool:
        return sum(r.active for r in runners) == 1

    await until(one_active, 10.0)
    return next(r for r in runners if r.active)


async def test_one_replica_projects_and_a_standby_takes_over_from_the_checkpoint(
    bus: Bus, redis_client: aioredis.Redis, story: Any
) -> None:
    first, second, third = story.run(), story.run(), story.run(end="failed")
    a, b = await replica(bus, redis_client, "a"), await replica(bus, redis_client, "b")
    stops = {a: asyncio.Event(), b: asyncio.Event()}
    tasks = {r: asyncio.create_task(r.run(stops[r])) for r in (a, b)}
    try:
        holder = await until_active([a, b])
        standby = b if holder is a else a
        for event in first:
            await bus.publish_event(event)
        await until_caught_up(bus, [holder])
        assert not standby.active  # it stood by the whole time
        details: dict[str, float | int | str] = {}
        await LagMonitor(bus, [standby], details).measure()
        assert details == {"projector_redis": "standby"}  # a standby reports no lag

        stops[holder].set()  # a stop lets the lease go: the standby takes over at once
        await tasks[holder]
        for event in second:
            await bus.publish_event(event)
        await until_active([standby])
        await until_caught_up(bus, [standby])

        # a holder that dies keeps its lease until it expires (the task is cancelled, as
        # the process would be killed, but its lease stays: nothing releases it)
        revived = await replica(bus, redis_client, "c")
        stops[revived] = asyncio.Event()
        tasks[revived] = asyncio.create_task(revived.run(stops[revived]))
        await asyncio.sleep(TTL_S / 2)
        assert not revived.active
        assert standby.leases is not None

        async def dies_holding(_lease: Any) -> None:
            return None

        standby.leases.release = dies_holding  # type: ignore[method-assign]
        tasks[standby].cancel()
        await asyncio.gather(tasks[standby], return_exceptions=True)
        for event in third:
            await bus.publish_event(event)
        await until_active([revived])
        await until_caught_up(bus, [revived])
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    hot = HotViews(redis_client)
    for run in (first, second, third):
        assert len(await hot.recent_events(story.tenant_id, run[0].thread_id)) == len(run)
    assert (await hot.run_status(story.tenant_id, str(third[0].run_id)) or {}).get("status") == "failed"


async def test_a_projector_acknowledges_nothing_and_leaves_no_durable_consumer(
    bus: Bus, redis_client: aioredis.Redis, story: Any
) -> None:
    feeder = runner(bus, RedisProjection(redis_client))
    stop = asyncio.Event()
    task = asyncio.create_task(feeder.run(stop))
    try:
        for event in story.run():
            await bus.publish_event(event)
        await until_caught_up(bus, [feeder])
        durables = [c.name async for c in _consumers(bus) if c.config.durable_name]
        assert durables == []
    finally:
        stop.set()
        await task


async def _consumers(bus: Bus) -> AsyncIterator[Any]:
    for info in await bus.js.consumers_info(APEX_EVT.name):
        yield info
