"""cost_breakdown: where the money goes."""

from __future__ import annotations

from apex_contracts.queries import Dimension, UsageAggregate
from apex_contracts.tools import CostBreakdownInput, CostBreakdownResult, CostRow
from apex_tools.catalog.common import cite, usage_filter
from apex_tools.ports import UsageQueries


async def cost_breakdown(
    usage: UsageQueries, tenant_id: str, args: CostBreakdownInput
) -> CostBreakdownResult:
    group: list[Dimension] = [args.group_by]
    if args.group_by == "model":
        group.append("provider")
    result = await usage.aggregate(UsageAggregate(
        tenant_id=tenant_id,
        group_by=group,
        metrics=["requests", "cost_usd", "prompt_tokens", "completion_tokens"],
        filter=usage_filter(args),
        order_by="cost_usd",
        limit=500,
    ))
    total = sum(float(r["cost_usd"] or 0) for r in result.rows)
    requests = sum(int(r["requests"] or 0) for r in result.rows)
    rows = [
        CostRow(
            key=str(r[args.group_by] if r[args.group_by] is not None else "(none)"),
            provider=r.get("provider"),
            requests=int(r["requests"]),
            cost_usd=float(r["cost_usd"] or 0),
            prompt_tokens=int(r["prompt_tokens"] or 0),
            completion_tokens=int(r["completion_tokens"] or 0),
            share=round(float(r["cost_usd"] or 0) / total, 4) if total else 0.0,
        )
        for r in result.rows
    ]
    return CostBreakdownResult(
        group_by=args.group_by, total_cost_usd=total, requests=requests, rows=rows,
        queries=cite(result),
    )
