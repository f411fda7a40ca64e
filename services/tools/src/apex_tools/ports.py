"""What tools need from the outside world, as narrow ports."""

from __future__ import annotations

from typing import Protocol

from apex_contracts.queries import Q_USAGE_AGGREGATE, UsageAggregate, UsageRows
from apex_runtime import Bus


class UsageQueries(Protocol):
    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        """Runs a typed aggregate over the tenant's ``llm_usage``; raises ApexError."""
        ...


class BusUsageQueries:
    """Asks persistence's read API (``apex.q.usage.aggregate``)."""

    def __init__(self, bus: Bus, timeout_s: float) -> None:
        self._bus = bus
        self._timeout_s = timeout_s

    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        return await self._bus.query(Q_USAGE_AGGREGATE, query, UsageRows, timeout=self._timeout_s)
