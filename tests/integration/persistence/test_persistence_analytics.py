"""The embedded ClickHouse (chdb): events projection exact under redelivery, usage
ingest idempotent, and aggregates equal to figures computed here independently."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

from apex_contracts import UsageRecord, new_id
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.queries import UsageAggregate, UsageFilter, UsageSummary
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.usage import UsageLedger

MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku"),
    ("acme", "mystery-1"),
)


def usage_records(count: int, seed: int = 3) -> list[UsageRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for n in range(count):
        provider, model = MODELS[n % len(MODELS)]
        records.append(
            UsageRecord(
                ts=start + timedelta(minutes=37 * n),
                provider=provider,
                model=model,
                workload=rng.choice(["chat", "search", None]),
                prompt_tokens=rng.randint(50, 5000),
                completion_tokens=rng.randint(10, 800),
                cached_tokens=rng.choice([None, 0, 40]),
                latency_ms=rng.choice([None, *range(80, 4000, 7)]),
                status=rng.choice(["ok", "ok", "ok", "error", "timeout"]),
                cost_usd=rng.choice([None, None, round(rng.uniform(0.0001, 0.2), 6)]),
                prompt_hash=rng.choice([None, "p1", "p2"]),
                request_id=f"req-{n}" if n % 3 else None,
            )
        )
    return records


def expected_cost(record: UsageRecord) -> float:
    if record.cost_usd is not None:
        return record.cost_usd
    return (
        PriceCatalogue.default().cost_usd(
            record.provider,
            record.model,
            record.prompt_tokens,
            record.completion_tokens,
            record.cached_tokens or 0,
        )
        or 0.0
    )


async def test_usage_aggregates_equal_independent_figures(analytics: ChdbStore) -> None:
    tenant, other = new_id("ten"), new_id("ten")
    records = usage_records(240)
    ledger = UsageLedger(analytics, PriceCatalogue.default())
    await ledger.ingest(tenant, records)
    await ledger.ingest(tenant, records[:100])
    await ledger.ingest(other, records[:50])

    result = await ledger.aggregate(
        UsageAggregate(
            tenant_id=tenant,
            group_by=["model"],
            metrics=[
                "requests",
                "cost_usd",
                "latency_p50",
                "latency_p95",
                "errors",
                "with_latency",
                "first_ts",
            ],
            order_by="requests",
        )
    )
    assert "{tenant_id:String}" in result.sql and tenant not in result.sql
    assert len(result.rows) == len(MODELS)
    for row in result.rows:
        mine = [r for r in records if r.model == row["model"]]
        latencies = [r.latency_ms for r in mine if r.latency_ms is not None]
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        assert row["requests"] == len(mine)
        assert round(row["cost_usd"], 2) == round(sum(expected_cost(r) for r in mine), 2)
        assert row["latency_p50"] == statistics.median(latencies)
        assert abs(row["latency_p95"] - cuts[94]) < 1e-9
        assert row["errors"] == sum(1 for r in mine if r.status != "ok")
        assert row["with_latency"] == len(latencies)
        assert datetime.fromisoformat(row["first_ts"]) == min(r.ts for r in mine)
    unknown = next(r for r in result.rows if r["model"] == "mystery-1")
    assert unknown["cost_usd"] == round(sum(r.cost_usd or 0 for r in records if r.model == "mystery-1"), 6)


async def test_usage_filters_and_summary(analytics: ChdbStore) -> None:
    tenant = new_id("ten")
    records = usage_records(120, seed=11)
    ledger = UsageLedger(analytics, PriceCatalogue.default())
    await ledger.ingest(tenant, records)
    start, end = datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 1, 2, 12, tzinfo=UTC)
    window = [r for r in records if start <= r.ts < end and r.model in ("gpt-4o", "gpt-4o-mini")]
    result = await ledger.aggregate(
        UsageAggregate(
            tenant_id=tenant,
            metrics=["requests", "prompt_tokens", "with_request_id"],
            filter=UsageFilter(start=start, end=end, models=["gpt-4o", "gpt-4o-mini", "x' OR 1=1 --"]),
        )
    )
    assert result.rows == [
        {
            "requests": len(window),
            "prompt_tokens": sum(r.prompt_tokens for r in window),
            "with_request_id": sum(1 for r in window if r.request_id),
        }
    ]
    summary = await ledger.summary(UsageSummary(tenant_id=tenant))
    assert summary.requests == len(records)
    assert summary.total_cost_usd == round(sum(expected_cost(r) for r in records), 2)
    assert summary.period.start == min(r.ts for r in records) and summary.period.end == max(
        r.ts for r in records
    )
    by_model = {m.model: m for m in summary.by_model}
    latencies = [r.latency_ms for r in records if r.model == "gpt-4o" and r.latency_ms is not None]
    assert by_model["gpt-4o"].p95_latency_ms == round(
        statistics.quantiles(latencies, n=100, method="inclusive")[94]
    )
    empty = await ledger.summary(UsageSummary(tenant_id=new_id("ten")))
    assert (empty.requests, empty.total_cost_usd, empty.by_model) == (0, 0.0, [])
