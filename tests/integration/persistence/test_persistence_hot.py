"""The Redis projection's reads and its sequence guards (exactness under redelivery is
``test_projection_contract.py``)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from apex_contracts import ThreadDeleted, ThreadDeletedData, new_id
from apex_persistence.hot import HotViews, RedisProjection


async def test_hot_views_read_the_recent_events_and_the_run_status(
    redis_client: aioredis.Redis, story: Any
) -> None:
    events = story.threads(count=3, runs_per_thread=2)
    batch = story.deliveries(events)
    await RedisProjection(redis_client, keep=5).apply(batch)
    views = HotViews(redis_client)
    last_of_thread = [e for e in events if e.thread_id == events[0].thread_id][-5:]
    recent = await views.recent_events(story.tenant_id, events[0].thread_id)
    assert [orjson.loads(raw)["id"] for _seq, raw in recent] == [e.id for e in last_of_thread]
    run_events = [e for e in events if e.run_id == events[0].run_id]
    status = await views.run_status(story.tenant_id, str(events[0].run_id))
    assert status is not None
    assert status["status"] == "completed" and status["thread_id"] == events[0].thread_id
    assert int(status["seq"]) == batch[events.index(run_events[-1])].seq


async def test_an_older_event_never_regresses_the_status(redis_client: aioredis.Redis, story: Any) -> None:
    events = story.run(end="cancelled")
    batch = story.deliveries(events)
    projection = RedisProjection(redis_client)
    await projection.apply([batch[-1]])
    await projection.apply(batch[:-1])
    status = await HotViews(redis_client).run_status(story.tenant_id, str(events[0].run_id))
    assert status is not None and status["status"] == "cancelled"
    assert await HotViews(redis_client).run_status(story.tenant_id, new_id("run")) is None


async def test_erasure_removes_the_thread_and_keeps_it_removed(
    redis_client: aioredis.Redis, story: Any
) -> None:
    events = story.run()
    batch = story.deliveries(events)
    projection = RedisProjection(redis_client)
    await projection.apply(batch)
    tombstone = ThreadDeleted(
        id=new_id("evt"),
        tenant_id=story.tenant_id,
        user_id=story.user_id,
        thread_id=events[0].thread_id,
        data=ThreadDeletedData(erase=True, requested_by=story.user_id),
    )
    await projection.apply(story.deliveries([tombstone], first_seq=100))
    await projection.apply(batch)
    views = HotViews(redis_client)
    assert await views.recent_events(story.tenant_id, events[0].thread_id) == []
    assert await views.run_status(story.tenant_id, str(events[0].run_id)) is None


async def test_a_batch_is_one_round_trip_and_survives_a_server_that_lost_its_scripts(
    redis_client: aioredis.Redis, story: Any, monkeypatch: Any
) -> None:
    first, second, third = (story.run() for _ in range(3))
    projection = RedisProjection(redis_client)
    await projection.apply(story.deliveries(first))  # the scripts are loaded on the first NOSCRIPT
    sent: list[str] = []
    pipeline_class = type(redis_client.pipeline())
    execute, immediate = pipeline_class.execute, pipeline_class.immediate_execute_command

    async def counted_execute(self: Any, *args: Any, **options: Any) -> Any:
        sent.append("pipeline")
        return await execute(self, *args, **options)

    async def counted_immediate(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await immediate(self, *args, **options)

    monkeypatch.setattr(pipeline_class, "execute", counted_execute)
    monkeypatch.setattr(pipeline_class, "immediate_execute_command", counted_immediate)
    await projection.apply(story.deliveries(second, first_seq=100))
    assert sent == ["pipeline"]  # no SCRIPT EXISTS before it

    await redis_client.script_flush()  # as after a restart without persistence of scripts
    await projection.apply(story.deliveries(third, first_seq=200))
    assert sent[1:] == ["pipeline", "pipeline"]  # refused (NOSCRIPT), loaded, sent again
    for events in (second, third):
        status = await HotViews(redis_client).run_status(story.tenant_id, str(events[0].run_id))
        assert status is not None and status["status"] == "completed"
    assert await projection.position() == 200 + len(third) - 1
