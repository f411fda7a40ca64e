"""batch_opportunity: workloads that can wait, moved to the providers' Batch APIs.

A workload counts as latency-tolerant when the caller names it, when its name says it
is offline work (batch, nightly, report, summarisation, evaluation, embedding, ETL...),
or when most of its calls run off-hours (00:00-06:00 UTC), as scheduled jobs do. The
saving is its cost times the model's published batch discount; batch jobs may take up
to a day to return, which is why only tolerant workloads are proposed."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from typing import Any

from apex_contracts.tools import BatchInput, BatchResult, BatchRow
from apex_tools.catalog.common import NONE_KEY, TenantUsage, key, monthly, num, span_days, usage_filter
from apex_tools.ports import UsageQueries

OFFLINE_NAME = re.compile(
    r"batch|nightly|night|offline|backfill|etl|cron|schedul|report|digest|summar|eval|embed|index|"
    r"enrich|ingest|export|archiv",
    re.IGNORECASE,
)
OFF_HOURS = range(0, 6)


async def batch_opportunity(usage: UsageQueries, tenant_id: str, args: BatchInput) -> BatchResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    rows, hours, days = await asyncio.gather(
        tenant.aggregate(
            ["requests", "cost_usd", "with_latency", "latency_p50"],
            where,
            group_by=["workload", "provider", "model"],
            order_by="cost_usd",
            limit=1000,
        ),
        tenant.aggregate(["requests"], where, group_by=["workload", "hour_of_day"], limit=10_000),
        span_days(tenant, where),
    )
    off_hours = _off_hours_share(hours)
    named = {w.lower() for w in args.tolerant_workloads}
    out: list[BatchRow] = []
    for row in rows:
        workload = key(row["workload"])
        reason = _reason(workload, named, off_hours.get(workload, 0.0), args.off_hours_share_min)
        price = tenant.price(row["provider"], row["model"])
        if reason is None or price is None or not price.batch_discount:
            continue
        saving = num(row["cost_usd"]) * price.batch_discount
        out.append(
            BatchRow(
                workload=workload,
                provider=row["provider"],
                model=row["model"],
                requests=int(row["requests"]),
                cost_usd=num(row["cost_usd"]),
                reason=reason,
                off_hours_share=off_hours.get(workload, 0.0),
                batch_discount=price.batch_discount,
                saving_usd=saving,
                monthly_saving_usd=monthly(saving, days),
                p50_ms=row.get("latency_p50") if row.get("with_latency") else None,
            )
        )
    out.sort(key=lambda r: r.monthly_saving_usd, reverse=True)
    return BatchResult(
        rows=out,
        considered_workloads=len({key(r["workload"]) for r in rows}),
        span_days=round(days, 3),
        total_saving_usd=sum(r.saving_usd for r in out),
        total_monthly_saving_usd=sum(r.monthly_saving_usd for r in out),
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def _off_hours_share(hours: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, int] = defaultdict(int)
    night: dict[str, int] = defaultdict(int)
    for h in hours:
        workload = key(h["workload"])
        total[workload] += int(h["requests"])
        if int(h["hour_of_day"]) in OFF_HOURS:
            night[workload] += int(h["requests"])
    return {w: round(night[w] / n, 4) for w, n in total.items() if n}


def _reason(workload: str, named: set[str], off_hours: float, threshold: float) -> str | None:
    if workload.lower() in named:
        return "named as latency-tolerant"
    if workload != NONE_KEY and OFFLINE_NAME.search(workload):
        return "its name says it is offline work"
    if off_hours >= threshold:
        return "most of its calls run at night (UTC), like a scheduled job"
    return None
