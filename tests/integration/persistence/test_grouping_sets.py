"""Several groupings in one query (``UsageAggregate.grouping_sets``) give, set by set,
exactly the rows of the separate ``group_by`` queries, on the embedded ClickHouse."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex_contracts import new_id
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.queries import Dimension, Metric, UsageAggregate
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.usage import UsageLedger
from tests.integration.persistence.test_persistence_analytics import usage_records

DIMENSIONS: list[Dimension] = ["model", "provider", "workload", "status", "day"]
METRICS: list[Metric] = ["requests", "cost_usd", "first_ts", "active_days", "with_workload", "latency_p50"]


def without_set(rows: list[dict[str, Any]], index: int, dims: list[Dimension]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k in METRICS or k in dims}
        for row in rows
        if row["grouping_set"] == index
    ]


async def test_each_set_equals_its_own_query(analytics: ChdbStore) -> None:
    ledger = UsageLedger(analytics, PriceCatalogue.default())
    tenant = new_id("ten")
    await ledger.ingest(tenant, usage_records(300, seed=5))
    await ledger.ingest(new_id("ten"), usage_records(40, seed=6))  # another tenant's rows stay out

    cases: list[tuple[list[list[Dimension]], int, int]] = []

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        sets=st.lists(
            st.lists(st.sampled_from(DIMENSIONS), max_size=3, unique=True),
            min_size=1,
            max_size=4,
            unique_by=frozenset,
        ),
        limit=st.integers(1, 30),
        min_requests=st.integers(0, 20),
    )
    def generate(sets: list[list[Dimension]], limit: int, min_requests: int) -> None:
        cases.append((sets, limit, min_requests))

    generate()  # the store is async: the generated cases run below, each against both forms
    for sets, limit, min_requests in cases:
        shape: dict[str, Any] = {"order_by": "requests", "limit": limit, "min_requests": min_requests}
        together = await ledger.aggregate(
            UsageAggregate(tenant_id=tenant, metrics=METRICS, grouping_sets=sets, **shape)
        )
        union = list(dict.fromkeys(d for dims in sets for d in dims))
        for index, dims in enumerate(sets):
            ties = sorted(dims, key=union.index)  # within a set, ties go by the union's order
            alone = await ledger.aggregate(
                UsageAggregate(tenant_id=tenant, metrics=METRICS, group_by=ties, **shape)
            )
            assert without_set(together.rows, index, dims) == alone.rows, (sets, index, limit, min_requests)


async def test_a_tenant_without_rows_gets_only_zero_totals(analytics: ChdbStore) -> None:
    ledger = UsageLedger(analytics, PriceCatalogue.default())
    result = await ledger.aggregate(
        UsageAggregate(tenant_id=new_id("ten"), metrics=["requests"], grouping_sets=[[], ["model"]])
    )
    assert result.rows == [{"model": None, "requests": 0, "grouping_set": 0}]
