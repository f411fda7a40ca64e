"""Retention per store (real Postgres, chdb, NATS): what is older than a store's window
goes (Postgres: whole idle threads; ClickHouse: events and usage rows; the audit log),
what is newer stays, and a rebuild applies the same windows before it swaps in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from apex_contracts import UsageRecord, new_id
from apex_contracts.audit import AuditEntry, audit_subject
from apex_contracts.pricing import PriceCatalogue
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.projector import AuditProjection, PostgresProjection
from apex_persistence.projection.delivery import Delivery
from apex_persistence.rebuild.control import Rebuilder
from apex_persistence.retention import RetentionSweeper
from apex_persistence.settings import Retention
from apex_runtime import Bus, CircuitBreaker
from tests.integration.persistence.harness import dump_clickhouse, dump_postgres

NOW = datetime.now(UTC)
WINDOW = Retention(postgres_days=30, audit_days=30, clickhouse_days=30, usage_days=30)


@pytest.fixture
async def bus(server_factory: Any) -> AsyncIterator[Bus]:
    connected = await Bus.connect(server_factory("nats").url, "persistence-retention-test")
    await connected.ensure_topology()
    yield connected
    await connected.close()


def usage(ts: datetime, request_id: str) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        provider="openai",
        model="gpt-4o-mini",
        prompt_tokens=100,
        completion_tokens=10,
        request_id=request_id,
    )


async def test_each_store_keeps_its_window_and_a_rebuild_keeps_the_same(
    bus: Bus,
    pg: Database,
    redis_client: aioredis.Redis,
    analytics: ChdbStore,
    new_story: Any,
) -> None:
    old = new_story(start=NOW - timedelta(days=45))
    recent = new_story(old.tenant_id, start=NOW - timedelta(days=2))
    old_thread, recent_thread = old.run(), recent.run()
    revived = old.run()  # an old thread that is still active: it stays whole
    revived += new_story(old.tenant_id, old.user_id, start=NOW - timedelta(days=1)).run(revived[0].thread_id)
    events = old_thread + revived + recent_thread
    await old.publish(bus, events)
    batch = old.deliveries(events)
    await PostgresProjection(pg).apply(batch)
    await ClickHouseProjection(analytics).apply(batch)
    ledger = UsageLedger(analytics, PriceCatalogue.default())
    await ledger.ingest(old.tenant_id, [usage(NOW - timedelta(days=40), "r-old"), usage(NOW, "r-new")])
    entries = [
        AuditEntry(
            id=new_id("aud"),
            tenant_id=old.tenant_id,
            action="auth.login",
            outcome="success",
            service="auth",
            at=at,
        )
        for at in (NOW - timedelta(days=60), NOW)
    ]
    await AuditProjection(pg).apply(
        [
            Delivery(n + 1, audit_subject(e.tenant_id), e.model_dump_json().encode())
            for n, e in enumerate(entries)
        ]
    )

    breakers = {name: CircuitBreaker(name) for name in ("postgres", "clickhouse")}
    await RetentionSweeper(WINDOW, pg, analytics, breakers).sweep()

    async with pg.writer() as conn:
        threads = set((await conn.execute(text("SELECT id FROM apex.threads"))).scalars())
        archived = set((await conn.execute(text("SELECT DISTINCT thread_id FROM apex.events"))).scalars())
        audit = (await conn.execute(text("SELECT id FROM apex.audit_log"))).scalars().all()
    assert threads == archived == {revived[0].thread_id, recent_thread[0].thread_id}
    assert audit == [entries[1].id]
    analytic = await analytics.select(
        "SELECT thread_id, min(occurred_at) AS first FROM $db.events FINAL GROUP BY thread_id", {}
    )
    assert {row["thread_id"] for row in analytic} == {revived[0].thread_id, recent_thread[0].thread_id}
    assert all(
        datetime.fromisoformat(row["first"]).replace(tzinfo=UTC) > NOW - timedelta(days=30)
        for row in analytic
    )
    rows = await analytics.select("SELECT request_id FROM $db.llm_usage FINAL", {})
    assert [row["request_id"] for row in rows] == ["r-new"]

    swept = (await dump_postgres(pg), await dump_clickhouse(analytics))
    rebuilding = Rebuilder(
        bus, pg, redis_client, analytics, retention=WINDOW, redis_keep=100, redis_ttl_s=86_400
    )
    await rebuilding.run("postgres")
    await rebuilding.run("clickhouse")
    assert (await dump_postgres(pg), await dump_clickhouse(analytics)) == swept
