"""The tenant's price overrides in the ``KV_PRICE_OVERRIDES`` bucket (JetStream key-value:
durable and replicated like the bus): read by the tools and the usage summary, written
by ``PUT /api/v1/usage/prices``."""

from __future__ import annotations

from apex_contracts.pricing import KV_PRICE_OVERRIDES, TenantPrices
from apex_runtime import Bus, KvBucket


class TenantPriceStore:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._kv: KvBucket | None = None

    async def get(self, tenant_id: str) -> TenantPrices:
        """The tenant's overrides; empty when it set none."""
        kv = await self._bucket()
        entry = await kv.get(tenant_id)
        return (
            TenantPrices()
            if entry is None or not entry.value
            else TenantPrices.model_validate_json(entry.value)
        )

    async def put(self, tenant_id: str, prices: TenantPrices) -> None:
        kv = await self._bucket()
        await kv.put(tenant_id, prices.model_dump_json().encode())

    async def _bucket(self) -> KvBucket:
        if self._kv is None:
            self._kv = await self._bus.bucket(KV_PRICE_OVERRIDES)  # made by ensure_topology
        return self._kv
