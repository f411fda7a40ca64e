"""Erasure through the whole service (real NATS, Postgres, Redis, chdb): a ``user.erased``
or ``thread.deleted`` with ``erase`` leaves nothing of the user (or thread) in any store,
in the archive, in the event log or in the audit trail, except the tombstone that keeps
it erased and the ``data.erased`` audit entry; everyone else's data is untouched; a
tombstone covers what came before it and the later events of the runs it names (dropped
and purged too), and nothing after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from apex_contracts import new_id
from apex_contracts.audit import AuditEntry, audit_subject
from apex_contracts.queries import Q_THREADS_LIST, ThreadsList, ThreadsPage
from apex_contracts.streams import APEX_AUDIT
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.bootstrap import PersistenceService
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus

SECRET = "my secret margin plan for Q3"


@pytest.fixture
async def service(
    server_factory: Any, pg_dsn: str, redis_url: str, analytics: ChdbStore
) -> AsyncIterator[PersistenceService]:
    settings = PersistenceSettings(
        nats_url=server_factory("nats").url,
        postgres_dsn=pg_dsn,
        redis_url=redis_url,
        persistence_port=0,
        instance_id="persistence-erasure",
        clickhouse_database=analytics.database,
        log_format="text",
        eraser_every_s=0.2,
    )
    running = PersistenceService(settings, analytics=analytics)
    await running.start()
    yield running
    await running.stop()


async def traces(service: PersistenceService, needle: str) -> dict[str, list[str]]:
    """Where ``needle`` still appears: Postgres rows, Redis keys and values, ClickHouse
    rows, the event log and the audit stream, each named by where it was found."""
    found: dict[str, list[str]] = {}
    async with service.stores.db.writer() as conn:
        tables = (
            (await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'apex'")))
            .scalars()
            .all()
        )
        for table in tables:
            rows = (await conn.execute(text(f"SELECT x::text FROM apex.{table} x"))).scalars().all()
            found[f"postgres.{table}"] = [r for r in rows if needle in r]
    redis = service.stores.redis
    hits = []
    for key in await redis.keys("*"):
        kind = await redis.type(key)
        value = (
            await redis.hgetall(key)
            if kind == b"hash"
            else await redis.zrange(key, 0, -1)
            if kind == b"zset"
            else await redis.smembers(key)
            if kind == b"set"
            else await redis.get(key)
        )
        if needle.encode() in key or needle.encode() in repr(value).encode():
            hits.append(key.decode())
    found["redis"] = hits
    analytics = service.stores.analytics
    for table in ("events", "erased_threads", "erased_users"):
        rows = await analytics.select(f"SELECT * FROM $db.{table}", {})
        found[f"clickhouse.{table}"] = [
            orjson.dumps(r).decode() for r in rows if needle in orjson.dumps(r).decode()
        ]
    bus = service.host.bus
    found["event_log"] = [
        data.decode() async for _seq, data in bus.read_subject("apex.evt.>") if needle in data.decode()
    ]
    found["audit_stream"] = [
        data.decode()
        async for _seq, data in bus.read_subject("apex.audit.>", stream=APEX_AUDIT.name)
        if needle in data.decode()
    ]
    return {where: hits for where, hits in found.items() if hits}


async def audit(bus: Bus, tenant_id: str, actor: str, action: str = "auth.login") -> None:
    entry = AuditEntry(
        id=new_id("aud"),
        tenant_id=tenant_id,
        action=action,
        outcome="success",
        service="auth",
        actor_user_id=actor,
        source_ip="203.0.113.7",
        session_id=new_id("ses"),
    )
    await bus.js.publish(audit_subject(tenant_id), entry.model_dump_json().encode())


async def erased_audited(service: PersistenceService, tenant_id: str, target: str) -> bool:
    async with service.stores.db.writer() as conn:
        return bool(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM apex.audit_log WHERE tenant_id = :t AND action = 'data.erased' AND target = :g"
                ),
                {"t": tenant_id, "g": target},
            )
        )


async def test_erased_user_leaves_nothing_in_any_store(
    service: PersistenceService, new_story: Any, eventually: Any
) -> None:
    bus = service.host.bus
    alice = new_story()
    bob = new_story(alice.tenant_id)
    alice_events = alice.run(text=SECRET) + alice.run(text="and the latency?")
    bob_events = bob.run(text="bob asks about caching")
    await alice.publish(bus, alice_events + bob_events)
    await audit(bus, alice.tenant_id, alice.user_id)
    await audit(bus, alice.tenant_id, bob.user_id)

    async def everywhere() -> bool:
        found = await traces(service, SECRET)
        return {
            "postgres.messages",
            "postgres.events",
            "postgres.threads",
            "redis",
            "clickhouse.events",
            "event_log",
        } <= set(found)

    await eventually(everywhere)
    assert "postgres.audit_log" in await traces(service, alice.user_id)

    going = alice.run(text=SECRET)  # a run of hers still going when she is erased
    await alice.publish(bus, going[:2])
    await alice.publish(bus, [alice.erase_user(runs=[str(going[0].run_id)])])
    await eventually(lambda: erased_audited(service, alice.tenant_id, f"user:{alice.user_id}"))
    assert await traces(service, SECRET) == {}
    remaining = await traces(service, alice.user_id)
    # What stays: the tombstones that keep her erased, and the record of the erasure.
    assert set(remaining) == {
        "postgres.erasures",
        "postgres.audit_log",
        "redis",
        "clickhouse.erased_users",
        "audit_stream",
    }, remaining
    assert sorted(remaining["redis"]) == [
        f"apex:{alice.tenant_id}:user:{alice.user_id}:erased",
        f"apex:{alice.tenant_id}:user:{alice.user_id}:erased_runs",
    ]
    assert all("data.erased" in hit for hit in remaining["postgres.audit_log"] + remaining["audit_stream"])
    me = {"tenant_id": alice.tenant_id, "user_id": alice.user_id}
    assert (await bus.query(Q_THREADS_LIST, ThreadsList(**me), ThreadsPage)).threads == []

    bob_left = await traces(service, "bob asks about caching")
    assert {"postgres.messages", "redis", "clickhouse.events", "event_log"} <= set(bob_left)
    assert "postgres.audit_log" in await traces(service, bob.user_id)

    # The run that was still going publishes after the erasure, and auth audits the end of
    # her sessions: neither is kept, both are purged from the log too.
    await alice.publish(bus, going[2:])
    await audit(bus, alice.tenant_id, alice.user_id, "auth.session_revoked")

    async def purged_again() -> bool:
        left = await traces(service, alice.user_id)
        return (
            await traces(service, SECRET) == {}
            and "event_log" not in left
            and all("data.erased" in hit for hit in left.get("audit_stream", []) + left["postgres.audit_log"])
        )

    await eventually(purged_again)

    # The tombstone covers only what came before it (and the runs it named): a later run
    # under her id, which no closed account can start but nothing else forbids, is kept.
    await alice.publish(bus, alice.run(text="a new question after the erasure"))

    async def kept() -> bool:
        return {"postgres.messages", "redis", "clickhouse.events", "event_log"} <= set(
            await traces(service, "a new question after the erasure")
        )

    await eventually(kept)
    assert await traces(service, SECRET) == {}


async def test_erased_thread_leaves_nothing_and_the_rest_stays(
    service: PersistenceService, story: Any, eventually: Any
) -> None:
    bus = service.host.bus
    doomed = story.run(text=SECRET)
    kept = story.run(text="keep this one")
    await story.publish(bus, doomed + kept)
    thread_id = doomed[0].thread_id

    async def projected() -> bool:
        return {"postgres.messages", "redis", "clickhouse.events"} <= set(await traces(service, SECRET))

    await eventually(projected)
    await story.publish(bus, [story.delete(thread_id, erase=True)])
    await eventually(lambda: erased_audited(service, story.tenant_id, f"thread:{thread_id}"))
    assert await traces(service, SECRET) == {}
    remaining = await traces(service, thread_id)
    assert set(remaining) == {
        "postgres.erasures",
        "postgres.audit_log",
        "redis",
        "clickhouse.erased_threads",
        "audit_stream",
    }, remaining
    assert remaining["redis"] == [f"apex:{story.tenant_id}:thread:{thread_id}:erased"]
    assert {"postgres.messages", "redis", "clickhouse.events", "event_log"} <= set(
        await traces(service, "keep this one")
    )
    # and a message posted to the thread after its erasure starts it anew
    await story.publish(bus, story.run(thread_id, text="posted after the erasure"))

    async def anew() -> bool:
        return {"postgres.messages", "redis", "clickhouse.events", "event_log"} <= set(
            await traces(service, "posted after the erasure")
        )

    await eventually(anew)
    assert await traces(service, SECRET) == {}
