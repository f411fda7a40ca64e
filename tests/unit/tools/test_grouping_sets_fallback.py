"""A persistence older than ``grouping_sets`` ignores the field and answers the totals:
the tool then asks each grouping on its own (a rolling upgrade keeps working)."""

from __future__ import annotations

from typing import Any

from apex_contracts import new_id
from apex_contracts.pricing import PriceCatalogue, TenantPrices
from apex_contracts.queries import UsageAggregate, UsageFilter, UsageRows
from apex_tools.catalog.common import TenantUsage


class OldPersistence:
    def __init__(self) -> None:
        self.asked: list[UsageAggregate] = []

    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        self.asked.append(query)
        row: dict[str, Any] = {d: "x" for d in query.group_by} | {"requests": 3}
        return UsageRows(rows=[row], sql="-- old", elapsed_ms=1.0)

    async def prices(self, tenant_id: str) -> TenantPrices:
        return TenantPrices()


async def test_an_old_persistence_is_asked_each_grouping_on_its_own() -> None:
    old = OldPersistence()
    tenant = TenantUsage(old, new_id("ten"), TenantPrices(), PriceCatalogue.default())
    totals, models = await tenant.aggregate_sets(["requests"], UsageFilter(), [[], ["model"]])
    assert totals == [{"requests": 3}] and models == [{"model": "x", "requests": 3}]
    assert [q.group_by for q in old.asked[1:]] == [[], ["model"]]
