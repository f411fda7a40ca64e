"""usage_coverage: how much data there is and which fields it has."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from apex_contracts.queries import UsageAggregate
from apex_contracts.report import Period
from apex_contracts.tools import CoverageInput, CoverageResult, ModelCount
from apex_tools.catalog.common import cite, usage_filter
from apex_tools.ports import UsageQueries

# Field name in an upload -> the metric counting rows that carry it.
_OPTIONAL_FIELD_METRICS = {
    "latency_ms": "with_latency",
    "cost_usd": "with_cost",
    "workload": "with_workload",
    "cached_tokens": "with_cached",
    "prompt_hash": "with_prompt_hash",
    "request_id": "with_request_id",
}
_ALWAYS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens", "status")


async def usage_coverage(usage: UsageQueries, tenant_id: str, args: CoverageInput) -> CoverageResult:
    where = usage_filter(args)
    totals, models, workloads = await asyncio.gather(
        usage.aggregate(UsageAggregate(
            tenant_id=tenant_id,
            metrics=["requests", "first_ts", "last_ts", *_OPTIONAL_FIELD_METRICS.values()],
            filter=where,
        )),
        usage.aggregate(UsageAggregate(
            tenant_id=tenant_id, group_by=["provider", "model"], metrics=["requests"],
            filter=where, order_by="requests", limit=100,
        )),
        usage.aggregate(UsageAggregate(
            tenant_id=tenant_id, group_by=["workload"], metrics=["requests"],
            filter=where, order_by="requests", limit=100,
        )),
    )
    row: dict[str, Any] = totals.rows[0] if totals.rows else {}
    rows = int(row.get("requests") or 0)
    present = {name: rows for name in _ALWAYS}
    present |= {name: int(row.get(metric) or 0) for name, metric in _OPTIONAL_FIELD_METRICS.items()}
    return CoverageResult(
        rows=rows,
        period=Period(start=_ts(row.get("first_ts")), end=_ts(row.get("last_ts"))) if rows else Period(),
        fields_present=present,
        fields_missing=[name for name, count in present.items() if count == 0],
        models=[
            ModelCount(provider=m["provider"], model=m["model"], requests=int(m["requests"]))
            for m in models.rows
        ],
        workloads=[str(w["workload"]) for w in workloads.rows if w.get("workload")],
        queries=cite(totals, models, workloads),
    )


def _ts(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
