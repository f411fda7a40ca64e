"""The read side the HTTP API and the dashboards show: persistence's queries
(``apex.q.*``) and JetStream's own figures, behind one object the routes call."""

from __future__ import annotations

from typing import Any

from apex_contracts.queries import (
    Q_AUDIT_LIST,
    Q_RUNS_RECENT,
    Q_SLA_SUMMARY,
    Q_USAGE_SUMMARY,
    AuditList,
    AuditPage,
    RunsPage,
    RunsRecent,
    SlaSummary,
    SlaView,
    UsageSummary,
)
from apex_gateway.dashboard.streams import streams_view
from apex_gateway.prices import TenantPriceStore
from apex_runtime import Bus


class ReadSide:
    def __init__(self, bus: Bus, prices: TenantPriceStore) -> None:
        self._bus = bus
        self._prices = prices

    async def audit(self, query: AuditList) -> AuditPage:
        return await self._bus.query(Q_AUDIT_LIST, query, AuditPage)

    async def service_levels(self, tenant_id: str) -> SlaView:
        return await self._bus.query(Q_SLA_SUMMARY, SlaSummary(tenant_id=tenant_id), SlaView)

    async def recent_runs(self, tenant_id: str, limit: int) -> RunsPage:
        return await self._bus.query(Q_RUNS_RECENT, RunsRecent(tenant_id=tenant_id, limit=limit), RunsPage)

    async def usage_summary(self, tenant_id: str) -> dict[str, Any]:
        """Totals and per-model figures at the tenant's prices (applied where read)."""
        prices = await self._prices.get(tenant_id)
        return await self._bus.query_raw(
            Q_USAGE_SUMMARY, UsageSummary(tenant_id=tenant_id, prices=prices.overrides)
        )

    async def streams(self) -> dict[str, Any]:
        """Streams and durable consumers as JetStream reports them (operators only)."""
        return await streams_view(self._bus)
