"""error_waste: calls that failed (error, rate_limited, timeout) and what they cost.

A failed call that consumed tokens was paid for and produced nothing; when the caller
retries it, the spend repeats. The waste is the cost recorded for failed calls (uploaded,
or priced from their tokens); fixing the cause saves up to that amount."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from apex_contracts.tools import ErrorRow, ErrorWasteInput, ErrorWasteResult
from apex_tools.catalog.common import TenantUsage, key, monthly, num, share, span_days, usage_filter
from apex_tools.ports import UsageQueries

ADVICE = {
    "rate_limited": "Most were rate limited: add backoff with jitter, spread the load, or raise the quota.",
    "timeout": "Most timed out: stream responses, lower max_tokens, or move long calls to a queue.",
    "error": "Most were errors: validate requests and read the provider's error before retrying.",
}


async def error_waste(usage: UsageQueries, tenant_id: str, args: ErrorWasteInput) -> ErrorWasteResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    rows, days = await asyncio.gather(
        tenant.aggregate(
            ["requests", "cost_usd", "prompt_tokens", "completion_tokens"],
            where,
            group_by=["workload", "provider", "model", "status"],
            limit=10_000,
        ),
        span_days(tenant, where),
    )
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(key(row["workload"]), row["provider"], row["model"])].append(row)
    out = [_row(k, g, days) for k, g in groups.items()]
    out = sorted((r for r in out if r.failed), key=lambda r: (-r.wasted_cost_usd, -r.failed, r.workload))
    requests = sum(int(r["requests"]) for r in rows)
    failed = sum(int(r["requests"]) for r in rows if r["status"] != "ok")
    wasted = sum(num(r["cost_usd"]) for r in rows if r["status"] != "ok")
    return ErrorWasteResult(
        requests=requests,
        failed=failed,
        error_rate=share(failed, requests),
        rows=out,
        span_days=round(days, 3),
        total_saving_usd=wasted,
        total_monthly_saving_usd=monthly(wasted, days),
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def _row(group: tuple[str, str, str], rows: list[dict[str, Any]], days: float) -> ErrorRow:
    by_status = {r["status"]: r for r in rows}
    count = {
        s: int(by_status[s]["requests"]) if s in by_status else 0
        for s in ("error", "rate_limited", "timeout")
    }
    failed_rows = [r for r in rows if r["status"] != "ok"]
    wasted = sum(num(r["cost_usd"]) for r in failed_rows)
    requests = sum(int(r["requests"]) for r in rows)
    worst = max(count, key=lambda s: (count[s], s))
    return ErrorRow(
        workload=group[0],
        provider=group[1],
        model=group[2],
        requests=requests,
        failed=sum(count.values()),
        error_rate=share(sum(count.values()), requests),
        errors=count["error"],
        rate_limited=count["rate_limited"],
        timeouts=count["timeout"],
        wasted_cost_usd=wasted,
        monthly_wasted_usd=monthly(wasted, days),
        wasted_tokens=sum(
            int(r["prompt_tokens"] or 0) + int(r["completion_tokens"] or 0) for r in failed_rows
        ),
        advice=ADVICE[worst],
    )
