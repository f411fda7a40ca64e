"""``UsageAggregate`` compiled to ClickHouse SQL from a whitelist (pure).

No caller text ever reaches the SQL: dimensions and metrics are looked up in the tables
below, every value (the tenant first) is a bound parameter, and table columns are
qualified (``u.cost_usd``) so an output alias never shadows a column. Percentiles are
``quantileExactInclusive``: linear interpolation between closest ranks, the same as
Python's ``statistics.quantiles(method="inclusive")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from apex_contracts import InvalidInput
from apex_contracts.queries import Dimension, Metric, UsageAggregate
from apex_persistence.analytics.rows import ch_time, from_ch_time

Kind = Literal["str", "int", "float", "time", "date"]

DIMENSIONS: Final[dict[str, tuple[str, Kind]]] = {
    "model": ("u.model", "str"),
    "provider": ("u.provider", "str"),
    "workload": ("u.workload", "str"),
    "day": ("toDate(u.ts)", "date"),
    "hour": ("toStartOfHour(u.ts)", "time"),
    "status": ("u.status", "str"),
    "prompt_hash": ("u.prompt_hash", "str"),
}


def _quantile(level: float, column: str) -> str:
    return f"quantileExactInclusive({level})(u.{column})"


METRICS: Final[dict[str, tuple[str, Kind]]] = {
    "requests": ("count()", "int"),
    "cost_usd": ("sum(u.cost_usd)", "float"),
    "prompt_tokens": ("sum(u.prompt_tokens)", "int"),
    "completion_tokens": ("sum(u.completion_tokens)", "int"),
    "cached_tokens": ("ifNull(sum(u.cached_tokens), 0)", "int"),
    "latency_avg": ("avgOrNull(u.latency_ms)", "float"),
    "latency_p50": (_quantile(0.5, "latency_ms"), "float"),
    "latency_p95": (_quantile(0.95, "latency_ms"), "float"),
    "latency_p99": (_quantile(0.99, "latency_ms"), "float"),
    "prompt_tokens_p50": (_quantile(0.5, "prompt_tokens"), "float"),
    "prompt_tokens_p95": (_quantile(0.95, "prompt_tokens"), "float"),
    "prompt_tokens_max": ("maxOrNull(u.prompt_tokens)", "int"),
    "errors": ("countIf(u.status != 'ok')", "int"),
    "first_ts": ("minOrNull(u.ts)", "time"),
    "last_ts": ("maxOrNull(u.ts)", "time"),
    "with_latency": ("count(u.latency_ms)", "int"),
    "with_cost": ("countIf(u.cost_source = 'reported')", "int"),
    "with_workload": ("count(u.workload)", "int"),
    "with_cached": ("count(u.cached_tokens)", "int"),
    "with_prompt_hash": ("count(u.prompt_hash)", "int"),
    "with_request_id": ("count(u.request_id)", "int"),
    "distinct_prompts": ("uniqExact(u.prompt_hash)", "int"),
}

_FILTERS: Final = (
    ("models", "u.model"),
    ("providers", "u.provider"),
    ("workloads", "u.workload"),
    ("statuses", "u.status"),
)


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    sql: str
    params: dict[str, Any]
    kinds: dict[str, Kind]


def compile_aggregate(query: UsageAggregate) -> CompiledQuery:
    """The SQL (with ``$db``) and bound parameters of one aggregate."""
    group: list[Dimension] = list(dict.fromkeys(query.group_by))
    metrics: list[Metric] = list(dict.fromkeys(query.metrics))
    select = [f"{DIMENSIONS[d][0]} AS {d}" for d in group] + [f"{METRICS[m][0]} AS {m}" for m in metrics]
    where, params = _where(query)
    sql = [f"SELECT {', '.join(select)}", "FROM $db.llm_usage AS u FINAL", f"WHERE {' AND '.join(where)}"]
    if group:
        sql.append(f"GROUP BY {', '.join(group)}")
    if query.min_requests:
        sql.append("HAVING count() >= {min_requests:UInt64}")
        params["min_requests"] = query.min_requests
    order = _order(query, group)
    if order:
        sql.append(f"ORDER BY {', '.join(order)}")
    sql.append("LIMIT {limit:UInt32}")
    params["limit"] = query.limit
    kinds: dict[str, Kind] = {d: DIMENSIONS[d][1] for d in group}
    kinds |= {m: METRICS[m][1] for m in metrics}
    return CompiledQuery(sql="\n".join(sql), params=params, kinds=kinds)


def _where(query: UsageAggregate) -> tuple[list[str], dict[str, Any]]:
    where = ["u.tenant_id = {tenant_id:String}"]
    params: dict[str, Any] = {"tenant_id": query.tenant_id}
    if query.filter.start is not None:
        where.append("u.ts >= {start:DateTime64(3, 'UTC')}")
        params["start"] = ch_time(query.filter.start)
    if query.filter.end is not None:
        where.append("u.ts < {end:DateTime64(3, 'UTC')}")
        params["end"] = ch_time(query.filter.end)
    for name, column in _FILTERS:
        values = getattr(query.filter, name)
        if values:
            where.append(f"{column} IN {{{name}:Array(String)}}")
            params[name] = [str(v) for v in values]
    return where, params


def _order(query: UsageAggregate, group: list[Dimension]) -> list[str]:
    order: list[str] = []
    if query.order_by is not None:
        if query.order_by not in query.metrics:
            raise InvalidInput(f"order_by {query.order_by!r} must be one of the requested metrics")
        order.append(f"{query.order_by} {'DESC' if query.descending else 'ASC'}")
    return order + list(group)


def normalise(row: dict[str, Any], kinds: dict[str, Kind]) -> dict[str, Any]:
    """A result row with the same Python types whatever the engine: ints, floats, ISO
    8601 UTC text for moments and ``YYYY-MM-DD`` for days, None for no value."""
    return {name: _value(row.get(name), kinds.get(name, "str")) for name in kinds}


def _value(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        number = float(value)
        return None if math.isnan(number) else number
    if kind == "time":
        moment = value if isinstance(value, datetime) else from_ch_time(str(value))
        return moment.isoformat()
    if kind == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    return str(value)
