"""model_substitution: for each workload and model, the cheaper current model of the same
provider with similar capability (same tier) or, failing that, one tier down.

The saving applies the relative list-price difference for the workload's own token mix
(uncached input, cached input, output) to what the workload actually cost, so a tenant
who pays less than list sees a proportionally smaller saving. The latency effect comes
from the tenant's own data where it already uses the alternative model."""

from __future__ import annotations

import asyncio
from typing import Any

from apex_contracts.pricing import ModelPrice
from apex_contracts.tools import SubstitutionInput, SubstitutionResult, SubstitutionRow
from apex_tools.catalog.common import (
    TenantUsage,
    key,
    monthly,
    num,
    span_days,
    tokens_cost,
    usage_filter,
)
from apex_tools.ports import UsageQueries

_SIMILAR_LATENCY = 0.10  # within 10 % of the current p50 counts as "similar"


async def model_substitution(
    usage: UsageQueries, tenant_id: str, args: SubstitutionInput
) -> SubstitutionResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    rows, latency_by_model, days = await asyncio.gather(
        tenant.aggregate(
            [
                "requests",
                "cost_usd",
                "prompt_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "completion_tokens",
                "with_latency",
                "latency_p50",
                "latency_p95",
            ],
            where,
            group_by=["workload", "provider", "model"],
            order_by="cost_usd",
            limit=1000,
        ),
        tenant.aggregate(
            ["with_latency", "latency_p50", "latency_p95"],
            usage_filter(args.model_copy(update={"models": [], "workloads": []})),
            group_by=["provider", "model"],
            limit=1000,
        ),
        span_days(tenant, where),
    )
    seen_latency = {
        (tenant.catalogue.canonical_provider(r["provider"]), r["model"]): r
        for r in latency_by_model
        if r.get("with_latency")
    }
    out: list[SubstitutionRow] = []
    unpriced: set[str] = set()
    for row in rows:
        price = tenant.price(row["provider"], row["model"])
        if price is None:
            unpriced.add(row["model"])
            continue
        best = _best_alternative(tenant, price, row, args)
        if best is not None:
            tenant.sources.add(best[0].source)
            out.append(_row(row, price, *best, days, seen_latency))
    out.sort(key=lambda r: r.monthly_saving_usd, reverse=True)
    return SubstitutionResult(
        rows=out,
        span_days=round(days, 3),
        unpriced_models=sorted(unpriced),
        total_saving_usd=sum(r.saving_usd for r in out),
        total_monthly_saving_usd=sum(r.monthly_saving_usd for r in out),
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def _tokens(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        int(row["prompt_tokens"] or 0),
        int(row["cached_tokens"] or 0),
        int(row["completion_tokens"] or 0),
        int(row.get("cache_write_tokens") or 0),
    )


def _best_alternative(
    tenant: TenantUsage, price: ModelPrice, row: dict[str, Any], args: SubstitutionInput
) -> tuple[ModelPrice, bool, float, float] | None:
    """(alternative, similar, list cost now, list cost on the alternative), the largest
    saving among same-tier models first, then among one-tier-down models."""
    list_cost = tokens_cost(price, *_tokens(row))
    if list_cost <= 0:
        return None
    options: dict[bool, list[tuple[float, ModelPrice]]] = {True: [], False: []}
    for alternative, similar in tenant.catalogue.alternatives(price):
        if not similar and not args.include_lower_tier:
            continue
        alt_cost = tokens_cost(alternative, *_tokens(row))
        if (list_cost - alt_cost) / list_cost >= max(args.min_saving_share, 1e-9):
            options[similar].append((alt_cost, alternative))
    for similar in (True, False):
        if options[similar]:
            alt_cost, alternative = min(options[similar], key=lambda o: (o[0], o[1].model))
            return alternative, similar, list_cost, alt_cost
    return None


def _row(
    row: dict[str, Any],
    price: ModelPrice,
    alternative: ModelPrice,
    similar: bool,
    list_cost: float,
    alt_cost: float,
    days: float,
    seen_latency: dict[tuple[str, str], dict[str, Any]],
) -> SubstitutionRow:
    relative = (list_cost - alt_cost) / list_cost
    saving = num(row["cost_usd"]) * relative
    alt_seen = seen_latency.get((alternative.provider, alternative.model))
    p50 = row.get("latency_p50") if row.get("with_latency") else None
    alt_p50 = alt_seen.get("latency_p50") if alt_seen else None
    return SubstitutionRow(
        workload=key(row["workload"]),
        provider=row["provider"],
        model=row["model"],
        requests=int(row["requests"]),
        cost_usd=num(row["cost_usd"]),
        list_cost_usd=list_cost,
        alternative=alternative.model,
        similar=similar,
        confidence="medium" if similar else "low",
        alternative_cost_usd=num(row["cost_usd"]) - saving,
        saving_usd=saving,
        monthly_saving_usd=monthly(saving, days),
        saving_share=round(relative, 4),
        p50_ms=p50,
        p95_ms=row.get("latency_p95") if row.get("with_latency") else None,
        alternative_p50_ms=alt_p50,
        alternative_p95_ms=alt_seen.get("latency_p95") if alt_seen else None,
        latency_effect=_latency_effect(p50, alt_p50, similar),
    )


def _latency_effect(p50: float | None, alt_p50: float | None, similar: bool) -> str:
    """What the tenant's own data says about the alternative's latency. It can only say
    what the alternative does on the tenant's other workloads, whose prompts differ."""
    if alt_p50 is None:
        unmeasured = "not measured yet (you do not use it)"
        return unmeasured if similar else f"likely faster (a smaller model); {unmeasured}"
    if p50 is None:
        return f"p50 {alt_p50:,.0f} ms on your other workloads; this one has no latency data"
    word = (
        "similar"
        if abs(alt_p50 - p50) <= _SIMILAR_LATENCY * p50
        else ("faster" if alt_p50 < p50 else "slower")
    )
    return f"{word} on your other workloads (p50 {alt_p50:,.0f} ms there, {p50:,.0f} ms here; prompts differ)"
