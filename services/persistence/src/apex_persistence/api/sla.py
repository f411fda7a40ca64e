"""Service levels of a tenant's runs (``apex.q.sla.summary``), read from the analytics
``events`` table: what the operators' dashboard shows as SLA figures and error rates.

- time to first event: from the user's message (``message.created``) to the run's first
  lifecycle event (``agent_started``, ``agent_thinking``, ``tool_executing``…): how long
  a user waits before seeing anything happen;
- run duration: ``duration_ms`` of the run's terminal event;
- errors by code: ``run.failed`` by error code, ``tool_completed`` with status ``error``
  by tool and code, beside the totals they are rates of (runs, tool calls).

Every window is computed in the same scan with ``-If`` aggregates, so the three figures
of a window always describe the same moment. Percentiles are ``quantilesExactInclusive``,
like the usage aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apex_contracts.events import LIFECYCLE, TERMINAL
from apex_contracts.queries import ErrorCount, Percentiles, SlaSummary, SlaView, SlaWindow
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.usage import UsageLedger

_LIFECYCLE = ", ".join(f"'{name}'" for name in sorted(LIFECYCLE))
_TERMINAL = ", ".join(f"'{name}'" for name in sorted(TERMINAL))
_QUANTILES = "quantilesExactInclusiveIf(0.5, 0.95, 0.99)"


def _since(i: int) -> str:
    return f"{{since_{i}:DateTime64(3, 'UTC')}}"


def _runs_sql(windows: int) -> str:
    """Per window: terminal runs by status, run duration percentiles, tool calls."""
    parts = []
    for i in range(windows):
        terminal = f"e.type IN ({_TERMINAL}) AND e.occurred_at >= {_since(i)}"
        parts += [
            f"countIf({terminal}) AS runs_{i}",
            f"countIf({terminal} AND e.status = 'completed') AS completed_{i}",
            f"countIf({terminal} AND e.status = 'needs_data') AS needs_data_{i}",
            f"countIf({terminal} AND e.status = 'failed') AS failed_{i}",
            f"countIf({terminal} AND e.status = 'cancelled') AS cancelled_{i}",
            f"{_QUANTILES}(e.duration_ms, {terminal} AND e.duration_ms IS NOT NULL) AS duration_{i}",
            f"countIf({terminal} AND e.duration_ms IS NOT NULL) AS duration_n_{i}",
            f"countIf(e.type = 'tool_completed' AND e.occurred_at >= {_since(i)}) AS tool_calls_{i}",
        ]
    return (
        f"SELECT {', '.join(parts)} FROM $db.events AS e FINAL "
        "WHERE e.tenant_id = {tenant_id:String} AND e.occurred_at >= {since_all:DateTime64(3, 'UTC')}"
    )


def _first_event_sql(windows: int) -> str:
    """Per window: percentiles of (first lifecycle event − message), runs started in it."""
    parts = []
    for i in range(windows):
        started = f"r.asked_at >= {_since(i)}"
        parts += [
            f"{_QUANTILES}(r.first_ms - r.asked_ms, {started}) AS ttfe_{i}",
            f"countIf({started}) AS ttfe_n_{i}",
        ]
    return (
        f"SELECT {', '.join(parts)} FROM ("
        " SELECT e.run_id AS run_id,"
        "  minIf(e.occurred_at, e.type = 'message.created') AS asked_at,"
        "  minIf(toUnixTimestamp64Milli(e.occurred_at), e.type = 'message.created') AS asked_ms,"
        f"  minIf(toUnixTimestamp64Milli(e.occurred_at), e.type IN ({_LIFECYCLE})) AS first_ms,"
        "  countIf(e.type = 'message.created') AS asked,"
        f"  countIf(e.type IN ({_LIFECYCLE})) AS progressed"
        " FROM $db.events AS e FINAL"
        " WHERE e.tenant_id = {tenant_id:String} AND e.run_id IS NOT NULL"
        "  AND e.occurred_at >= {since_all:DateTime64(3, 'UTC')}"
        " GROUP BY e.run_id HAVING asked > 0 AND progressed > 0"
        ") AS r"
    )


def _errors_sql(windows: int) -> str:
    counts = ", ".join(f"countIf(e.occurred_at >= {_since(i)}) AS n_{i}" for i in range(windows))
    return (
        "SELECT if(e.type = 'run.failed', 'run', 'tool') AS source,"
        " JSONExtractString(e.payload, 'data', 'error', 'code') AS code,"
        f" if(e.type = 'run.failed', '', ifNull(e.tool, '')) AS tool, {counts}"
        " FROM $db.events AS e FINAL"
        " WHERE e.tenant_id = {tenant_id:String} AND e.occurred_at >= {since_all:DateTime64(3, 'UTC')}"
        "  AND (e.type = 'run.failed' OR (e.type = 'tool_completed' AND e.status = 'error'))"
        " GROUP BY source, code, tool ORDER BY n_0 DESC, source, code, tool LIMIT 200"
    )


class SlaFigures:
    """Answers ``SlaSummary`` from the analytics store (chdb or a ClickHouse server)."""

    def __init__(
        self, store: AnalyticsStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def summary(self, query: SlaSummary) -> SlaView:
        now = self.clock()
        windows = list(query.windows_s)
        params: dict[str, Any] = {
            "tenant_id": query.tenant_id,
            "since_all": now - timedelta(seconds=max(windows)),
        }
        params.update({f"since_{i}": now - timedelta(seconds=w) for i, w in enumerate(windows)})
        runs = (await self.store.select(_runs_sql(len(windows)), params) or [{}])[0]
        first = (await self.store.select(_first_event_sql(len(windows)), params) or [{}])[0]
        errors = await self.store.select(_errors_sql(len(windows)), params)
        return SlaView(
            generated_at=now,
            windows=[_window(i, seconds, runs, first, errors) for i, seconds in enumerate(windows)],
        )


def sla_answer(ledger: UsageLedger) -> Callable[[SlaSummary], Awaitable[SlaView]]:
    """The read API's answer to ``sla.summary``, over the usage ledger's analytics store
    (looked up per query: the bus document builds the read API from bare objects)."""

    async def answer(query: SlaSummary) -> SlaView:
        return await SlaFigures(ledger.store).summary(query)

    return answer


def _window(
    i: int, seconds: int, runs: dict[str, Any], first: dict[str, Any], errors: list[dict[str, Any]]
) -> SlaWindow:
    statuses = ("completed", "needs_data", "failed", "cancelled")
    return SlaWindow(
        window_s=seconds,
        runs=_int(runs.get(f"runs_{i}")),
        runs_by_status={status: _int(runs.get(f"{status}_{i}")) for status in statuses},
        tool_calls=_int(runs.get(f"tool_calls_{i}")),
        time_to_first_event_ms=_percentiles(first.get(f"ttfe_{i}"), first.get(f"ttfe_n_{i}")),
        run_duration_ms=_percentiles(runs.get(f"duration_{i}"), runs.get(f"duration_n_{i}")),
        errors=[
            ErrorCount(
                source=row["source"],
                code=row["code"] or "unknown",
                tool=row["tool"] or None,
                count=_int(row[f"n_{i}"]),
            )
            for row in errors
            if _int(row.get(f"n_{i}"))
        ],
    )


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _percentiles(values: Any, count: Any) -> Percentiles:
    n = _int(count)
    if not n or not isinstance(values, list) or len(values) != 3:
        return Percentiles(count=n)
    p50, p95, p99 = (_ms(v) for v in values)
    return Percentiles(count=n, p50=p50, p95=p95, p99=p99)


def _ms(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 1)
