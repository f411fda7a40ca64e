"""Rebuilding each view from the log (real NATS, Postgres, Redis, chdb): a few hundred runs
with renames, deletions and erasures, the oldest part of the stream gone (only the
archive has it), rebuilt into a fresh set and swapped in: equal to what incremental
projection built. A rebuild while runs keep coming: reads never fail or shrink, and
nothing that arrived during it is missing afterwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from apex_contracts import Conflict
from apex_contracts.queries import ThreadsList
from apex_contracts.streams import APEX_EVT
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.eraser import Eraser
from apex_persistence.hot import RedisProjection
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.erasures import ErasureLedger
from apex_persistence.postgres.projector import PostgresProjection
from apex_persistence.postgres.reads import HistoryReads
from apex_persistence.projection.runner import ProjectorRunner
from apex_persistence.rebuild.control import Rebuilder
from apex_persistence.rebuild.procedure import exclusive
from apex_persistence.settings import Retention
from apex_runtime import Bus, CircuitBreaker
from tests.integration.persistence.harness import (
    dump_clickhouse,
    dump_postgres,
    runner,
    running,
    snapshot_redis,
    until_caught_up,
)

STORES = ("postgres", "redis", "clickhouse")


def live_runners(
    bus: Bus, pg: Database, redis_client: aioredis.Redis, analytics: ChdbStore
) -> list[ProjectorRunner]:
    return [
        runner(bus, PostgresProjection(pg)),
        runner(bus, RedisProjection(redis_client, ttl_s=86_400)),
        runner(bus, ClickHouseProjection(analytics)),
    ]


def rebuilder(bus: Bus, pg: Database, redis_client: aioredis.Redis, analytics: ChdbStore) -> Rebuilder:
    return Rebuilder(
        bus,
        pg,
        redis_client,
        analytics,
        retention=Retention(),
        redis_keep=100,
        redis_ttl_s=86_400,
        batch=500,
    )


async def views(pg: Database, redis_client: aioredis.Redis, analytics: ChdbStore) -> dict[str, Any]:
    return {
        "postgres": await dump_postgres(pg),
        "redis": await snapshot_redis(redis_client),
        "clickhouse": await dump_clickhouse(analytics),
    }


async def catalog(pg: Database) -> dict[str, list[tuple[Any, ...]]]:
    """What the migrations made of schema apex, as Postgres describes it."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'apex'",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'apex'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'apex'::regnamespace",
        "policies": "SELECT tablename, policyname, roles::text, qual FROM pg_policies WHERE schemaname = 'apex'",
        "security": "SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'apex'::regnamespace",
        "grants": "SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema = 'apex'",
    }
    async with pg.writer() as conn:
        return {
            name: sorted(tuple(row) for row in (await conn.execute(text(sql))).all())
            for name, sql in queries.items()
        }


def history(new_story: Any, tenant: str | None = None) -> tuple[Any, Any, list[Any]]:
    """300 runs of two users, renames, a soft delete, an erased thread, an erased user."""
    start = datetime.now(UTC) - timedelta(hours=3)
    alice = new_story(tenant, start=start)
    bob = new_story(alice.tenant_id, start=start)
    events = alice.threads(count=80, runs_per_thread=3) + bob.threads(count=20, runs_per_thread=3)
    threads = list(dict.fromkeys(e.thread_id for e in events if e.user_id == alice.user_id))
    going = alice.run(threads[2]) + bob.run()  # runs still going when their subjects are erased
    events += [
        alice.rename(threads[0], "Spend, renamed"),
        alice.delete(threads[1]),
        alice.delete(threads[2], erase=True, runs=[str(going[0].run_id)]),
        bob.erase_user(runs=[str(going[-1].run_id)]),
    ]
    events += going  # their later events: covered by the tombstones that name them, dropped everywhere
    return alice, bob, events


async def test_rebuild_equals_incremental_for_every_store(
    bus: Bus,
    pg: Database,
    redis_client: aioredis.Redis,
    analytics: ChdbStore,
    new_story: Any,
) -> None:
    alice, bob, events = history(new_story)
    await alice.publish(bus, events)
    await bus.js.publish(alice.subject(events[5]), events[5].wire())  # re-stored beyond the dedupe window
    runners = live_runners(bus, pg, redis_client, analytics)
    async with running(runners):
        await until_caught_up(bus, runners, timeout=60)
    eraser = Eraser(bus, ErasureLedger(pg), CircuitBreaker("postgres"), [r.projection for r in runners])
    assert await eraser.step() == 2  # both erasures purged from the log and audited
    # Retention of the stream: its oldest third is gone; only the archive still has it.
    head = (await bus.js.stream_info(APEX_EVT.name)).state.last_seq
    await bus.js.purge_stream(APEX_EVT.name, seq=head // 3)
    incremental = await views(pg, redis_client, analytics)
    assert len(incremental["postgres"]["runs"]) == 240 - 3  # alice's, but not the erased thread's
    assert not [r for r in incremental["postgres"]["runs"] if r["user_id"] == bob.user_id]

    schema = await catalog(pg)
    rebuilding = rebuilder(bus, pg, redis_client, analytics)
    for store in STORES:
        report = await rebuilding.run(store)
        assert report.reached >= head and report.events >= len(incremental["postgres"]["events"]), store
    rebuilt = await views(pg, redis_client, analytics)
    for store in STORES:
        assert rebuilt[store] == incremental[store], store
    assert await catalog(pg) == schema  # same tables, columns, indexes, policies, grants as migrated
    async with pg.writer() as conn:
        schemas = set(
            (
                await conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'apex%'"))
            ).scalars()
        )
    assert schemas == {"apex"}
    assert not await redis_client.keys("apex:rebuild:*")


async def test_rebuild_keeps_serving_and_misses_nothing_that_arrives_meanwhile(
    bus: Bus,
    pg: Database,
    redis_client: aioredis.Redis,
    analytics: ChdbStore,
    new_story: Any,
) -> None:
    alice = new_story(start=datetime.now(UTC) - timedelta(hours=1))
    await alice.publish(bus, alice.threads(count=60, runs_per_thread=2))
    runners = live_runners(bus, pg, redis_client, analytics)
    reads = HistoryReads(pg)
    seen: list[int] = []
    async with running(runners):
        await until_caught_up(bus, runners, timeout=60)
        first = len(
            (
                await reads.threads_list(
                    ThreadsList(tenant_id=alice.tenant_id, user_id=alice.user_id, limit=100)
                )
            ).threads
        )
        stop = asyncio.Event()

        async def keep_reading() -> None:
            while not stop.is_set():
                page = await reads.threads_list(
                    ThreadsList(tenant_id=alice.tenant_id, user_id=alice.user_id, limit=100)
                )
                seen.append(len(page.threads))
                await asyncio.sleep(0.01)

        async def keep_chatting() -> None:
            for _ in range(20):
                await alice.publish(bus, alice.run())
                await asyncio.sleep(0.05)

        reader, chatter = asyncio.create_task(keep_reading()), asyncio.create_task(keep_chatting())
        for store in STORES:
            await rebuilder(bus, pg, redis_client, analytics).run(store)
        await chatter
        await until_caught_up(bus, runners, timeout=60)
        await asyncio.sleep(0.05)
        stop.set()
        await reader

    assert first == 60 and seen and min(seen) >= first and seen[-1] == 80
    async with pg.writer() as conn:
        assert (
            await conn.scalar(
                text(
                    "SELECT count(*) FROM apex.runs WHERE status = 'completed' OR "
                    "status IN ('needs_data', 'failed', 'cancelled')"
                )
            )
            == 140
        )
    keys = await redis_client.keys(f"apex:{alice.tenant_id}:run:*")
    assert len(keys) == 140
    rows = await analytics.select("SELECT uniqExact(run_id) AS n FROM $db.events FINAL", {})
    assert int(rows[0]["n"]) == 140


async def test_a_second_rebuild_of_a_store_is_refused_while_one_runs(
    bus: Bus,
    pg: Database,
    redis_client: aioredis.Redis,
    analytics: ChdbStore,
    story: Any,
) -> None:
    await story.publish(bus, story.run())
    async with exclusive(pg, "postgres"):
        with pytest.raises(Conflict):
            await rebuilder(bus, pg, redis_client, analytics).run("postgres")
    report = await rebuilder(bus, pg, redis_client, analytics).run("postgres")  # free again
    assert report.events == len(story.run())
