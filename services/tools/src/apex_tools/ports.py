"""What tools need from the outside world, as narrow ports."""

from __future__ import annotations

from typing import Protocol

from apex_contracts.pricing import KV_PRICE_OVERRIDES, TenantPrices
from apex_contracts.queries import Q_USAGE_AGGREGATE, UsageAggregate, UsageRows
from apex_runtime import Bus, KvBucket


class UsageQueries(Protocol):
    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        """Runs a typed aggregate over the tenant's ``llm_usage``; raises ApexError."""
        ...

    async def prices(self, tenant_id: str) -> TenantPrices:
        """The tenant's price overrides; empty when it set none."""
        ...


class BusUsageQueries:
    """Asks persistence's read API (``apex.q.usage.aggregate``); reads the tenant's price
    overrides from the ``KV_PRICE_OVERRIDES`` bucket."""

    def __init__(self, bus: Bus, timeout_s: float) -> None:
        self._bus = bus
        self._timeout_s = timeout_s
        self._kv: KvBucket | None = None

    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        return await self._bus.query(Q_USAGE_AGGREGATE, query, UsageRows, timeout=self._timeout_s)

    async def prices(self, tenant_id: str) -> TenantPrices:
        kv = await self._bucket()
        entry = await kv.get(tenant_id)
        return (
            TenantPrices()
            if entry is None or not entry.value
            else TenantPrices.model_validate_json(entry.value)
        )

    async def _bucket(self) -> KvBucket:
        if self._kv is None:
            self._kv = await self._bus.bucket(KV_PRICE_OVERRIDES)  # made by ensure_topology
        return self._kv
