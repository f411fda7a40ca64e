"""latency_profile: percentiles by model or workload, over rows that carry latency."""

from __future__ import annotations

from apex_contracts.queries import Dimension, UsageAggregate
from apex_contracts.tools import LatencyInput, LatencyResult, LatencyRow
from apex_tools.catalog.common import cite, usage_filter
from apex_tools.ports import UsageQueries


async def latency_profile(usage: UsageQueries, tenant_id: str, args: LatencyInput) -> LatencyResult:
    group: list[Dimension] = [args.group_by]
    if args.group_by == "model":
        group.append("provider")
    result = await usage.aggregate(UsageAggregate(
        tenant_id=tenant_id,
        group_by=group,
        metrics=["requests", "with_latency", "latency_p50", "latency_p95", "latency_p99"],
        filter=usage_filter(args),
        order_by="requests",
        limit=500,
    ))
    rows = [
        LatencyRow(
            key=str(r[args.group_by] if r[args.group_by] is not None else "(none)"),
            provider=r.get("provider"),
            requests=int(r["requests"]),
            measured=int(r["with_latency"] or 0),
            p50_ms=_num(r.get("latency_p50")) if r.get("with_latency") else None,
            p95_ms=_num(r.get("latency_p95")) if r.get("with_latency") else None,
            p99_ms=_num(r.get("latency_p99")) if r.get("with_latency") else None,
        )
        for r in result.rows
    ]
    return LatencyResult(group_by=args.group_by, rows=rows, queries=cite(result))


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
