"""``UsageAggregate`` compiled to ClickHouse SQL from a whitelist (pure).

No caller text ever reaches the SQL: dimensions and metrics are looked up in the tables
below, every value (the tenant first) is a bound parameter, and table columns are
qualified (``u.cost_usd``) so an output alias never shadows a column. Percentiles are
``quantileExactInclusive``: linear interpolation between closest ranks, the same as
Python's ``statistics.quantiles(method="inclusive")``.

Tenant price overrides are applied here, at read time: ``repriced`` names the stored
(provider, model) pairs an override prices, and every cost metric computes those rows
(unless their cost was uploaded) from their tokens at the override's prices.
``cost_sources`` names what priced the rows a figure sums: "uploaded", the price table
and its version (as stored at ingest), "tenant override" or "unpriced".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from apex_contracts import InvalidInput
from apex_contracts.pricing import OVERRIDE, PER_TOKENS, ModelPrice
from apex_contracts.queries import Dimension, Metric, UsageAggregate
from apex_persistence.analytics.rows import ch_time, from_ch_time

Kind = Literal["str", "int", "float", "time", "date", "strs"]

DIMENSIONS: Final[dict[str, tuple[str, Kind]]] = {
    "model": ("u.model", "str"),
    "provider": ("u.provider", "str"),
    "workload": ("u.workload", "str"),
    "day": ("toDate(u.ts)", "date"),
    "hour": ("toStartOfHour(u.ts)", "time"),
    "hour_of_day": ("toHour(u.ts)", "int"),
    "status": ("u.status", "str"),
    "prompt_hash": ("u.prompt_hash", "str"),
    "dedup_key": ("u.dedup_key", "str"),
}
_COST = "u.cost_usd"
_SOURCE = "$source"  # stands for the (override-aware) source expression
GROUPING_SET: Final = "grouping_set"
# Stored ``cost_source`` values as a reader names them (anything else is the table's name).
_SOURCE_LABELS = {"reported": "uploaded", "unknown": "unpriced", "catalogue": "apex price list 2026-03-21"}


def _quantile(level: float, column: str) -> str:
    return f"quantileExactInclusive({level})(u.{column})"


METRICS: Final[dict[str, tuple[str, Kind]]] = {
    "requests": ("count()", "int"),
    "cost_usd": ("sum(u.cost_usd)", "float"),
    "prompt_tokens": ("sum(u.prompt_tokens)", "int"),
    "completion_tokens": ("sum(u.completion_tokens)", "int"),
    "cached_tokens": ("ifNull(sum(u.cached_tokens), 0)", "int"),
    "cache_write_tokens": ("ifNull(sum(u.cache_write_tokens), 0)", "int"),
    "cost_sources": (f"arraySort(groupUniqArray({_SOURCE}))", "strs"),  # what priced the rows
    "latency_avg": ("avgOrNull(u.latency_ms)", "float"),
    "latency_p50": (_quantile(0.5, "latency_ms"), "float"),
    "latency_p95": (_quantile(0.95, "latency_ms"), "float"),
    "latency_p99": (_quantile(0.99, "latency_ms"), "float"),
    "prompt_tokens_p50": (_quantile(0.5, "prompt_tokens"), "float"),
    "prompt_tokens_p95": (_quantile(0.95, "prompt_tokens"), "float"),
    "prompt_tokens_max": ("maxOrNull(u.prompt_tokens)", "int"),
    "errors": ("countIf(u.status != 'ok')", "int"),
    "error_cost_usd": ("sumIf(u.cost_usd, u.status != 'ok')", "float"),
    "active_days": ("uniqExact(toDate(u.ts))", "int"),
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
    ("dedup_keys", "u.dedup_key"),
)


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    sql: str
    params: dict[str, Any]
    kinds: dict[str, Kind]


Repriced = Sequence[tuple[str, str, ModelPrice]]


def compile_aggregate(query: UsageAggregate, repriced: Repriced = ()) -> CompiledQuery:
    """The SQL (with ``$db``) and bound parameters of one aggregate; ``repriced`` are the
    stored (provider, model) pairs whose cost comes from a tenant price override."""
    sets = [list(dict.fromkeys(s)) for s in query.grouping_sets]
    group: list[Dimension] = list(dict.fromkeys(query.group_by or [d for s in sets for d in s]))
    metrics: list[Metric] = list(dict.fromkeys(query.metrics))
    where, params = _where(query)
    cost = _cost_expression(repriced, params)
    source = _source_expression(repriced)
    select = [f"{DIMENSIONS[d][0]} AS {d}" for d in group] + [
        f"{METRICS[m][0].replace(_COST, cost).replace(_SOURCE, source)} AS {m}" for m in metrics
    ]
    if sets:
        select.append(f"{_set_index(sets, group)} AS {GROUPING_SET}")
    sql = [f"SELECT {', '.join(select)}", "FROM $db.llm_usage AS u FINAL", f"WHERE {' AND '.join(where)}"]
    if sets:
        each = ", ".join("(" + ", ".join(s) + ")" for s in sets)
        sql.append(f"GROUP BY GROUPING SETS ({each})")
    elif group:
        sql.append(f"GROUP BY {', '.join(group)}")
    if query.min_requests:
        sql.append("HAVING count() >= {min_requests:UInt64}")
        params["min_requests"] = query.min_requests
    order = ([GROUPING_SET] if sets else []) + _order(query, group)
    if order:
        sql.append(f"ORDER BY {', '.join(order)}")
    sql.append("LIMIT {limit:UInt32}" + (f" BY {GROUPING_SET}" if sets else ""))
    params["limit"] = query.limit
    if sets:  # outside its set a dimension is NULL, in standard SQL's GROUPING() bits
        sql.append("SETTINGS group_by_use_nulls = 1, force_grouping_standard_compatibility = 1")
    kinds: dict[str, Kind] = {d: DIMENSIONS[d][1] for d in group}
    kinds |= {m: METRICS[m][1] for m in metrics}
    if sets:
        kinds[GROUPING_SET] = "int"
    return CompiledQuery(sql="\n".join(sql), params=params, kinds=kinds)


def _set_index(sets: list[list[Dimension]], group: list[Dimension]) -> str:
    """Each row's index into ``grouping_sets``: ``GROUPING()`` over every dimension has a
    bit set (the first dimension the highest) for each one outside the row's set."""
    if not group:
        return "0"
    grouping = f"GROUPING({', '.join(group)})"
    width = len(group)
    masks = [sum(1 << (width - 1 - i) for i, d in enumerate(group) if d not in s) for s in sets]
    branches = [f"{grouping} = {mask}, {n}" for n, mask in enumerate(masks[:-1])]
    return f"multiIf({', '.join(branches)}, {len(sets) - 1})" if branches else "0"


def _cost_expression(repriced: Repriced, params: dict[str, Any]) -> str:
    """``u.cost_usd``, or, with overrides, the override's price for the rows it names
    whose cost was not uploaded (every price a bound parameter)."""
    if not repriced:
        return _COST
    prompt = "toFloat64(u.prompt_tokens)"
    cached = f"least(toFloat64(ifNull(u.cached_tokens, 0)), {prompt})"
    written = f"least(toFloat64(ifNull(u.cache_write_tokens, 0)), {prompt} - {cached})"
    branches = []
    for n, (provider, model, price) in enumerate(repriced):
        params |= {
            f"rp{n}": provider,
            f"rm{n}": model,
            f"ri{n}": price.input,
            f"rc{n}": price.cached_price,
            f"rw{n}": price.cache_write_price,
            f"ro{n}": price.output,
            f"rb{n}": 1 - price.batch_discount,
        }
        # the same arithmetic as ModelPrice.cost_usd, a batch call at the batch discount
        branches.append(
            f"u.provider = {{rp{n}:String}} AND u.model = {{rm{n}:String}}, "
            f"(({prompt} - {cached} - {written}) * {{ri{n}:Float64}} + {cached} * {{rc{n}:Float64}} "
            f"+ {written} * {{rw{n}:Float64}} + toFloat64(u.completion_tokens) * {{ro{n}:Float64}}) "
            f"/ {PER_TOKENS} * if(u.service_tier = 'batch', {{rb{n}:Float64}}, 1)"
        )
    return f"multiIf(u.cost_source = 'reported', u.cost_usd, {', '.join(branches)}, u.cost_usd)"


def _source_expression(repriced: Repriced) -> str:
    """What priced each row, named for a reader (uses the cost expression's parameters)."""
    branches = [f"u.cost_source = '{stored}', '{label}'" for stored, label in _SOURCE_LABELS.items()]
    overridden = [
        f"u.provider = {{rp{n}:String}} AND u.model = {{rm{n}:String}}, '{OVERRIDE}'"
        for n in range(len(repriced))
    ]
    return f"multiIf({', '.join(branches[:1] + overridden + branches[1:])}, u.cost_source)"


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
    if query.filter.min_prompt_tokens is not None:
        where.append("u.prompt_tokens > {min_prompt_tokens:UInt64}")
        params["min_prompt_tokens"] = query.filter.min_prompt_tokens
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
    if kind == "strs":
        return sorted(str(v) for v in value)
    if kind == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    return str(value)
