"""prompt_outliers: prompts far larger than their workload's median.

For each workload (the costliest ``max_workloads``), a prompt is an outlier when it has
more than ``factor`` times the workload's median prompt tokens. Its excess is the tokens
above the median; trimming outliers to the median (less context, summarised history)
saves the excess at each model's input price. Outliers may be legitimate (a long
document): the saving is what trimming would be worth, not a promise."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from apex_contracts.tools import OutlierInput, OutlierResult, OutlierRow
from apex_tools.catalog.common import TenantUsage, monthly, num, share, span_days, usage_filter
from apex_tools.ports import UsageQueries


async def prompt_outliers(usage: UsageQueries, tenant_id: str, args: OutlierInput) -> OutlierResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    workloads, days = await asyncio.gather(
        tenant.aggregate(
            ["requests", "cost_usd", "prompt_tokens_p50", "prompt_tokens_p95", "prompt_tokens_max"],
            where,
            group_by=["workload"],
            order_by="cost_usd",
            limit=1000,
        ),
        span_days(tenant, where),
    )
    named = [w for w in workloads if w.get("workload")][: args.max_workloads]
    outliers = await asyncio.gather(*(_outliers(tenant, args, w) for w in named))
    rows = [_row(tenant, w, found, args.factor, days) for w, found in zip(named, outliers, strict=True)]
    rows = sorted((r for r in rows if r.outliers), key=lambda r: (-r.saving_usd, r.workload))
    return OutlierResult(
        factor=args.factor,
        rows=rows,
        span_days=round(days, 3),
        total_saving_usd=sum(r.saving_usd for r in rows),
        total_monthly_saving_usd=sum(r.monthly_saving_usd for r in rows),
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def threshold(p50: float, factor: float) -> int:
    """Prompts with more tokens than this are outliers."""
    return math.floor(p50 * factor)


async def _outliers(
    tenant: TenantUsage, args: OutlierInput, workload: dict[str, Any]
) -> list[dict[str, Any]]:
    where = usage_filter(
        args.model_copy(update={"workloads": [workload["workload"]]}),
        min_prompt_tokens=threshold(num(workload["prompt_tokens_p50"]), args.factor),
    )
    return await tenant.aggregate(
        ["requests", "prompt_tokens", "cost_usd"],
        where,
        group_by=["provider", "model"],
        limit=1000,
    )


def _row(
    tenant: TenantUsage, workload: dict[str, Any], found: list[dict[str, Any]], factor: float, days: float
) -> OutlierRow:
    p50 = num(workload["prompt_tokens_p50"])
    excess = 0.0
    saving = 0.0
    for group in found:
        extra = int(group["prompt_tokens"]) - int(group["requests"]) * p50
        price = tenant.price(group["provider"], group["model"])
        excess += extra
        saving += extra * (price.input if price else 0.0) / 1_000_000
    count = sum(int(g["requests"]) for g in found)
    return OutlierRow(
        workload=str(workload["workload"]),
        requests=int(workload["requests"]),
        p50_tokens=round(p50),
        p95_tokens=round(num(workload["prompt_tokens_p95"])),
        max_tokens=int(workload["prompt_tokens_max"] or 0),
        threshold_tokens=threshold(p50, factor),
        outliers=count,
        outlier_share=share(count, int(workload["requests"])),
        outlier_cost_usd=sum(num(g["cost_usd"]) for g in found),
        excess_tokens=round(excess),
        saving_usd=saving,
        monthly_saving_usd=monthly(saving, days),
    )
