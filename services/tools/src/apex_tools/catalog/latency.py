"""latency_profile: percentiles by model or workload, over rows that carry latency."""

from __future__ import annotations

from apex_contracts.queries import Dimension
from apex_contracts.tools import LatencyInput, LatencyResult, LatencyRow
from apex_tools.catalog.common import TenantUsage, key, usage_filter
from apex_tools.ports import UsageQueries


async def latency_profile(usage: UsageQueries, tenant_id: str, args: LatencyInput) -> LatencyResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    group: list[Dimension] = [args.group_by]
    if args.group_by == "model":
        group.append("provider")
    rows = await tenant.aggregate(
        ["requests", "with_latency", "latency_p50", "latency_p95", "latency_p99"],
        usage_filter(args),
        group_by=group,
        order_by="requests",
        limit=1000,
    )
    return LatencyResult(
        group_by=args.group_by,
        rows=[
            LatencyRow(
                key=key(r[args.group_by]),
                provider=r.get("provider"),
                requests=int(r["requests"]),
                measured=int(r["with_latency"] or 0),
                p50_ms=r.get("latency_p50") if r.get("with_latency") else None,
                p95_ms=r.get("latency_p95") if r.get("with_latency") else None,
                p99_ms=r.get("latency_p99") if r.get("with_latency") else None,
            )
            for r in rows
        ],
        queries=tenant.citations(),
    )
