"""cost_breakdown: where the money goes."""

from __future__ import annotations

from apex_contracts.queries import Dimension
from apex_contracts.tools import CostBreakdownInput, CostBreakdownResult, CostRow
from apex_tools.catalog.common import TenantUsage, key, num, share, usage_filter
from apex_tools.ports import UsageQueries


async def cost_breakdown(
    usage: UsageQueries, tenant_id: str, args: CostBreakdownInput
) -> CostBreakdownResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    group: list[Dimension] = [args.group_by]
    if args.group_by == "model":
        group.append("provider")
    rows = await tenant.aggregate(
        ["requests", "cost_usd", "prompt_tokens", "completion_tokens", "cached_tokens"],
        usage_filter(args),
        group_by=group,
        order_by="cost_usd",
        limit=1000,
    )
    if args.group_by == "day":
        rows.sort(key=lambda r: str(r["day"]))
    total = sum(num(r["cost_usd"]) for r in rows)
    return CostBreakdownResult(
        group_by=args.group_by,
        total_cost_usd=total,
        requests=sum(int(r["requests"] or 0) for r in rows),
        rows=[
            CostRow(
                key=key(r[args.group_by]),
                provider=r.get("provider"),
                requests=int(r["requests"]),
                cost_usd=num(r["cost_usd"]),
                prompt_tokens=int(r["prompt_tokens"] or 0),
                completion_tokens=int(r["completion_tokens"] or 0),
                cached_tokens=int(r["cached_tokens"] or 0),
                share=share(num(r["cost_usd"]), total),
                price_sources=r.get("cost_sources") or [],
            )
            for r in rows
        ],
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )
