"""growth_projection: what next month costs.

The current month is the mean daily cost of the last (up to) 30 days with data, times
30 (days without calls inside that window count as zero). The observed trend is a
least-squares line through the daily costs: its slope over 30 days, relative to the
current daily mean. Next month = current month x (1 + growth), with the growth given by
the caller or else the observed trend. Fewer than 14 days of data give low confidence."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from apex_contracts.tools import MONTH_DAYS, DailyCost, GrowthInput, GrowthResult
from apex_tools.catalog.common import TenantUsage, num, usage_filter
from apex_tools.ports import UsageQueries


async def growth_projection(usage: UsageQueries, tenant_id: str, args: GrowthInput) -> GrowthResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    rows = await tenant.aggregate(
        ["cost_usd", "requests"], usage_filter(args), group_by=["day"], limit=10_000
    )
    daily = _fill(rows)
    window = daily[-MONTH_DAYS:]
    mean_cost = sum(d.cost_usd for d in window) / len(window) if window else 0.0
    mean_requests = sum(d.requests for d in window) / len(window) if window else 0.0
    observed = trend_pct([d.cost_usd for d in window])
    if args.monthly_growth_pct is not None:
        growth, source = args.monthly_growth_pct, "given"
    elif observed is not None:
        growth, source = observed, "observed"
    else:
        growth, source = 0.0, "none"
    current = mean_cost * MONTH_DAYS
    return GrowthResult(
        days_observed=len(daily),
        daily=daily,
        current_monthly_cost_usd=current,
        current_monthly_requests=round(mean_requests * MONTH_DAYS),
        observed_monthly_growth_pct=observed,
        growth_pct_used=round(growth, 1),
        growth_source=source,
        projected_next_month_cost_usd=current * (1 + round(growth, 1) / 100),
        projected_next_month_requests=round(mean_requests * MONTH_DAYS * (1 + round(growth, 1) / 100)),
        confidence="low" if len(daily) < 14 else ("high" if len(daily) >= 28 else "medium"),
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def _fill(rows: list[dict[str, Any]]) -> list[DailyCost]:
    """One entry per calendar day from the first to the last day with data."""
    by_day = {str(r["day"]): r for r in rows}
    if not by_day:
        return []
    first, last = date.fromisoformat(min(by_day)), date.fromisoformat(max(by_day))
    out = []
    for n in range((last - first).days + 1):
        day = (first + timedelta(days=n)).isoformat()
        row = by_day.get(day, {})
        out.append(
            DailyCost(day=day, cost_usd=num(row.get("cost_usd")), requests=int(row.get("requests") or 0))
        )
    return out


def trend_pct(values: list[float]) -> float | None:
    """Monthly growth of a daily series in percent (least-squares slope x 30 / mean),
    rounded to 0.1; None with fewer than 7 days or a zero mean."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    if n < 7 or mean <= 0:
        return None
    t_mean = (n - 1) / 2
    slope = sum((t - t_mean) * (v - mean) for t, v in enumerate(values)) / sum(
        (t - t_mean) ** 2 for t in range(n)
    )
    return round(slope * MONTH_DAYS / mean * 100, 1)
