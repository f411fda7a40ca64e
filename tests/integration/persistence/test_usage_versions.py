"""Aggregate answers kept per usage version (real NATS KV and chdb): the same query at the
same version is answered without ClickHouse; an ingest by any replica, or a retention
sweep, gives the tenant a new version, so the next answer has the change; a duplicate
check always runs; without a readable version nothing is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apex_contracts import ErrorCode, Unavailable, UsageRecord, new_id
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.queries import UsageAggregate, UsageFilter
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.analytics.versions import AnswerCache, BusVersions, usage_key
from apex_persistence.retention import RetentionSweeper
from apex_persistence.settings import Retention
from apex_runtime import Bus, CircuitBreaker
from tests.integration.persistence.harness import CountingStore

NOW = datetime.now(UTC)
TOTALS = ["requests", "cost_usd", "first_ts", "last_ts"]


def record(request_id: str, ts: datetime = NOW) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        provider="openai",
        model="gpt-4o-mini",
        prompt_tokens=100,
        completion_tokens=10,
        request_id=request_id,
    )


def totals(tenant_id: str, **extra: Any) -> UsageAggregate:
    return UsageAggregate(tenant_id=tenant_id, metrics=TOTALS, **extra)


async def test_a_repeated_query_is_answered_once_until_another_replica_ingests(
    bus: Bus, analytics: ChdbStore
) -> None:
    store = CountingStore(analytics)
    reader = UsageLedger(store, PriceCatalogue.default(), versions=BusVersions(bus))  # type: ignore[arg-type]
    writer = UsageLedger(analytics, PriceCatalogue.default(), versions=BusVersions(bus))
    tenant, other = new_id("ten"), new_id("ten")
    await writer.ingest(tenant, [record("a"), record("b")])

    first = await reader.aggregate(totals(tenant))
    again = await reader.aggregate(totals(tenant))
    assert first.rows == again.rows and first.rows[0]["requests"] == 2
    assert store.selects == 1

    await writer.ingest(other, [record("x")])  # another tenant's version moves, not this one's
    await reader.aggregate(totals(tenant))
    assert store.selects == 1

    await writer.ingest(tenant, [record("c")])  # the other replica stored rows: a new version
    after = await reader.aggregate(totals(tenant))
    assert after.rows[0]["requests"] == 3
    assert store.selects == 2

    shaped = await reader.aggregate(totals(tenant, group_by=["model"]))  # another query runs
    assert shaped.rows[0]["requests"] == 3 and store.selects == 3


async def test_a_duplicate_check_always_reaches_the_store(bus: Bus, analytics: ChdbStore) -> None:
    store = CountingStore(analytics)
    ledger = UsageLedger(store, PriceCatalogue.default(), versions=BusVersions(bus))  # type: ignore[arg-type]
    tenant = new_id("ten")
    await ledger.ingest(tenant, [record("a")])
    check = UsageAggregate(
        tenant_id=tenant,
        group_by=["dedup_key"],
        metrics=["requests"],
        filter=UsageFilter(dedup_keys=["a", "b"]),
    )
    for _ in range(3):
        assert [row["dedup_key"] for row in (await ledger.aggregate(check)).rows] == ["a"]
    assert store.selects == 3


async def test_a_retention_sweep_gives_the_swept_tenants_a_new_version(
    bus: Bus, analytics: ChdbStore, pg: Any
) -> None:
    store = CountingStore(analytics)
    versions = BusVersions(bus)
    ledger = UsageLedger(store, PriceCatalogue.default(), versions=versions)  # type: ignore[arg-type]
    tenant = new_id("ten")
    await ledger.ingest(tenant, [record("old", NOW - timedelta(days=40)), record("new")])
    assert (await ledger.aggregate(totals(tenant))).rows[0]["requests"] == 2
    before = await versions.current(usage_key(tenant))

    breakers = {name: CircuitBreaker(name) for name in ("postgres", "clickhouse")}
    window = Retention(postgres_days=0, audit_days=0, clickhouse_days=0, usage_days=30)
    await RetentionSweeper(window, pg, analytics, breakers, versions=versions).sweep()

    assert await versions.current(usage_key(tenant)) > before
    assert (await ledger.aggregate(totals(tenant))).rows[0]["requests"] == 1


class Unreadable:
    async def current(self, key: str) -> int:
        raise Unavailable("no bus", code=ErrorCode.BUS_UNAVAILABLE)

    async def bump(self, key: str) -> None:
        raise Unavailable("no bus", code=ErrorCode.BUS_UNAVAILABLE)


async def test_without_a_version_every_query_runs_and_an_unbumped_ingest_fails(analytics: ChdbStore) -> None:
    store = CountingStore(analytics)
    ledger = UsageLedger(store, PriceCatalogue.default(), versions=Unreadable())  # type: ignore[arg-type]
    tenant = new_id("ten")
    with pytest.raises(Unavailable):  # stored, but not acknowledged: the batch comes again
        await ledger.ingest(tenant, [record("a")])
    for _ in range(2):
        assert (await ledger.aggregate(totals(tenant))).rows[0]["requests"] == 1
    assert store.selects == 2


def test_the_cache_keeps_small_recent_answers_least_recently_used_first() -> None:
    from apex_contracts.queries import UsageRows

    now = [0.0]
    cache = AnswerCache(max_entries=2, max_rows=2, max_age_s=10.0, clock=lambda: now[0])
    small = UsageRows(rows=[{"requests": 1}], sql="q", elapsed_ms=1.0)
    cache.put("a", 1, small)
    cache.put("b", 1, small)
    assert cache.get("a", 1) is small  # "a" is now the most recent
    cache.put("c", 1, small)
    assert cache.get("b", 1) is None and cache.get("a", 1) is small
    assert cache.get("a", 2) is None  # another version
    cache.put("big", 1, UsageRows(rows=[{}, {}, {}], sql="q", elapsed_ms=1.0))
    assert cache.get("big", 1) is None
    now[0] = 11.0
    assert cache.get("a", 1) is None  # too old
