"""The analyst's tools over the real embedded ClickHouse: a database of this test's own,
the usage ledger that persistence runs, and a ``UsageQueries`` port that asks it directly
(the same typed aggregates the bus carries, without the bus)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apex_contracts import UsageRecord, new_id
from apex_contracts.pricing import PriceCatalogue, TenantPrices
from apex_contracts.queries import UsageAggregate, UsageRows
from apex_persistence.analytics.ddl import migrate_analytics
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.usage import UsageLedger


@dataclass
class LedgerUsage:
    """``UsageQueries`` over a ``UsageLedger``; ``tenant_prices`` stands in for the KV bucket."""

    ledger: UsageLedger
    tenant_prices: dict[str, TenantPrices] = field(default_factory=dict)
    asked: list[UsageAggregate] = field(default_factory=list)

    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        self.asked.append(query)
        return await self.ledger.aggregate(query)

    async def prices(self, tenant_id: str) -> TenantPrices:
        return self.tenant_prices.get(tenant_id, TenantPrices())


@pytest.fixture(scope="session")
async def tools_chdb(infra_root: Path) -> AsyncIterator[ChdbStore]:
    # The process's one embedded engine: every suite in this session opens the same path.
    store = ChdbStore(infra_root / "chdb", "apex_unused")
    yield store
    await store.close()


@pytest.fixture
async def ledger(tools_chdb: ChdbStore) -> AsyncIterator[UsageLedger]:
    store = tools_chdb.sibling(f"t_{uuid.uuid4().hex[:12]}")
    await migrate_analytics(store)
    yield UsageLedger(store, PriceCatalogue.default())
    await store.command("DROP DATABASE IF EXISTS $db")


@pytest.fixture
def usage(ledger: UsageLedger) -> LedgerUsage:
    return LedgerUsage(ledger)


@pytest.fixture
def tenant() -> str:
    return new_id("ten")


async def load(ledger: UsageLedger, tenant_id: str, rows: list[dict[str, Any]]) -> None:
    await ledger.ingest(tenant_id, [UsageRecord.model_validate(r) for r in rows])
