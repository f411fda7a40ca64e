"""Shared pieces of tool implementations: the tenant's view of its usage (filters, price
overrides, citations) and the arithmetic every savings tool does the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apex_contracts.pricing import ModelPrice, PriceCatalogue, TenantPrices
from apex_contracts.queries import Dimension, Metric, UsageAggregate, UsageFilter, UsageRows
from apex_contracts.tools import MONTH_DAYS, PeriodInput, QueryCitation
from apex_tools.ports import UsageQueries

NONE_KEY = "(none)"


def usage_filter(args: PeriodInput, **extra: Any) -> UsageFilter:
    return UsageFilter(
        start=args.period.start,
        end=args.period.end,
        models=args.models,
        workloads=args.workloads,
        **extra,
    )


@dataclass
class TenantUsage:
    """One tool run's access to one tenant's usage: every aggregate carries the tenant
    and its price overrides, and every query run is remembered for the citation."""

    usage: UsageQueries
    tenant_id: str
    prices: TenantPrices
    catalogue: PriceCatalogue
    ran: list[UsageRows] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)

    @classmethod
    async def open(cls, usage: UsageQueries, tenant_id: str) -> TenantUsage:
        prices = await usage.prices(tenant_id)
        return cls(usage, tenant_id, prices, PriceCatalogue.for_tenant(prices))

    async def aggregate(
        self,
        metrics: list[Metric],
        where: UsageFilter,
        *,
        group_by: list[Dimension] | None = None,
        order_by: Metric | None = None,
        limit: int = 1000,
        min_requests: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows of a typed aggregate; a cost metric also collects what priced its rows."""
        return await self._run(
            metrics, where, group_by=group_by or [], order_by=order_by, limit=limit, min_requests=min_requests
        )

    async def aggregate_sets(
        self,
        metrics: list[Metric],
        where: UsageFilter,
        sets: list[list[Dimension]],
        *,
        order_by: Metric | None = None,
        limit: int = 1000,
    ) -> list[list[dict[str, Any]]]:
        """The rows of each grouping set (``[]`` is the totals), read in one query;
        ``order_by`` and ``limit`` apply within each set."""
        rows = await self._run(metrics, where, grouping_sets=sets, order_by=order_by, limit=limit)
        if rows and "grouping_set" not in rows[0]:  # a persistence older than grouping_sets
            return [await self._run(metrics, where, group_by=s, order_by=order_by, limit=limit) for s in sets]
        out: list[list[dict[str, Any]]] = [[] for _ in sets]
        for row in rows:
            index = row.pop("grouping_set")
            out[index].append({k: v for k, v in row.items() if k in metrics or k in sets[index]})
        return out

    async def _run(self, metrics: list[Metric], where: UsageFilter, **shape: Any) -> list[dict[str, Any]]:
        if "cost_usd" in metrics and "cost_sources" not in metrics:
            metrics = [*metrics, "cost_sources"]
        result = await self.usage.aggregate(
            UsageAggregate(
                tenant_id=self.tenant_id, metrics=metrics, filter=where, prices=self.prices.overrides, **shape
            )
        )
        self.ran.append(result)
        for row in result.rows:
            self.sources.update(row.get("cost_sources") or [])
        return result.rows

    def citations(self) -> list[QueryCitation]:
        return [QueryCitation(sql=r.sql, elapsed_ms=round(r.elapsed_ms, 2)) for r in self.ran]

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """Today's price of a model (the tenant's override, else the table's); the
        source is remembered for the result's ``price_sources``."""
        found = self.catalogue.find(provider, model)
        if found is not None:
            self.sources.add(found.source)
        return found

    def price_sources(self) -> list[str]:
        """What priced the money in this tool's result: stored costs' sources and the
        prices its arithmetic used."""
        return sorted(self.sources)


async def span_days(tenant: TenantUsage, where: UsageFilter) -> float:
    """Days between the first and last record analysed (at least one)."""
    rows = await tenant.aggregate(["first_ts", "last_ts"], where)
    row = rows[0] if rows else {}
    return days_between(row.get("first_ts"), row.get("last_ts"))


def days_between(first: object, last: object) -> float:
    if not first or not last:
        return 1.0
    seconds = (parse_ts(last) - parse_ts(first)).total_seconds()
    return max(1.0, seconds / 86_400)


def parse_ts(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def monthly(amount: float, days: float) -> float:
    """An amount seen over ``days`` days, scaled to a 30-day month."""
    return amount * MONTH_DAYS / max(days, 1.0)


def tokens_cost(price: ModelPrice, prompt: int, cached: int, completion: int, cache_write: int = 0) -> float:
    """List cost of token totals (cache reads and writes at their own prices), at the
    first band: long-context bands depend on each call's size, which totals do not keep."""
    return price.cost_usd(prompt, completion, cached, cache_write)


def key(value: object) -> str:
    return NONE_KEY if value is None or value == "" else str(value)


def num(value: object) -> float:
    # a ClickHouse number (int, float, Decimal); float() raises on anything else
    return 0.0 if value is None else float(value)  # type: ignore[arg-type]


def share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0
