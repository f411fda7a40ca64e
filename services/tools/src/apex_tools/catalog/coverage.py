"""usage_coverage: how much data there is and which fields it has."""

from __future__ import annotations

from typing import Any

from apex_contracts.queries import Metric
from apex_contracts.report import Period
from apex_contracts.tools import CoverageInput, CoverageResult, ModelCount
from apex_tools.catalog.common import TenantUsage, days_between, parse_ts, usage_filter
from apex_tools.ports import UsageQueries

# Field name in an upload -> the metric counting rows that carry it.
_OPTIONAL_FIELD_METRICS: dict[str, Metric] = {
    "latency_ms": "with_latency",
    "cost_usd": "with_cost",
    "workload": "with_workload",
    "cached_tokens": "with_cached",
    "prompt_hash": "with_prompt_hash",
    "request_id": "with_request_id",
}
_ALWAYS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens", "status")


async def usage_coverage(usage: UsageQueries, tenant_id: str, args: CoverageInput) -> CoverageResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    totals, models, workloads = await tenant.aggregate_sets(
        ["requests", "first_ts", "last_ts", "active_days", *_OPTIONAL_FIELD_METRICS.values()],
        where,
        [[], ["provider", "model"], ["workload"]],
        order_by="requests",
        limit=100,
    )
    row: dict[str, Any] = totals[0] if totals else {}
    rows = int(row.get("requests") or 0)
    present = {name: rows for name in _ALWAYS}
    present |= {name: int(row.get(metric) or 0) for name, metric in _OPTIONAL_FIELD_METRICS.items()}
    first, last = row.get("first_ts"), row.get("last_ts")
    return CoverageResult(
        rows=rows,
        period=Period(start=parse_ts(first), end=parse_ts(last)) if rows and first and last else Period(),
        span_days=round(days_between(first, last), 3) if rows else 0.0,
        active_days=int(row.get("active_days") or 0),
        fields_present=present,
        fields_missing=[name for name, count in present.items() if count == 0],
        models=[
            ModelCount(provider=m["provider"], model=m["model"], requests=int(m["requests"])) for m in models
        ],
        workloads=[str(w["workload"]) for w in workloads if w.get("workload")],
        unpriced_models=sorted(m["model"] for m in models if tenant.price(m["provider"], m["model"]) is None),
        queries=tenant.citations(),
    )
