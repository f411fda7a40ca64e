"""The service levels the operators' dashboard shows (``sla.summary``), read from the
embedded ClickHouse: percentiles equal to the ones computed here from the same runs,
windows that only count what happened in them, errors named by code, one tenant only."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

from apex_contracts.queries import SlaSummary
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.api.sla import SlaFigures


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


async def test_percentiles_windows_and_errors_match_the_runs(analytics: ChdbStore, new_story: Any) -> None:
    story = new_story()
    old = story.run(end="completed")  # a day ago: only in the 24 h window
    story.clock += timedelta(hours=20)
    recent = story.run(end="completed") + story.run(end="failed") + story.run(end="needs_data", tools=3)
    other_tenant = new_story(start=story.clock).run(end="failed")
    await ClickHouseProjection(analytics).apply(story.deliveries(old + recent + other_tenant))

    now = story.clock + timedelta(minutes=1)
    view = await SlaFigures(analytics, clock=lambda: now).summary(
        SlaSummary(tenant_id=story.tenant_id, windows_s=[300, 86_400 + 3600])
    )
    five_min, day = view.windows
    assert (five_min.runs, day.runs) == (3, 4)
    assert five_min.runs_by_status == {"completed": 1, "needs_data": 1, "failed": 1, "cancelled": 0}

    def runs_of(events: list[Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for event in events:
            out.setdefault(event.run_id, []).append(event)
        return out

    def first_event_ms(events: list[Any]) -> float:
        asked = next(e.occurred_at for e in events if e.type == "message.created")
        first = min(
            e.occurred_at
            for e in events
            if e.type
            in ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
        )
        return (first - asked).total_seconds() * 1000

    expected_ttfe = _quantiles([first_event_ms(r) for r in runs_of(recent).values()])
    got = five_min.time_to_first_event_ms
    assert got.count == 3
    assert (got.p50, got.p95, got.p99) == tuple(round(v, 1) for v in expected_ttfe)

    durations = [e.data.duration_ms for e in recent if e.type in ("run.completed", "run.failed")]
    got = five_min.run_duration_ms
    assert got.count == 3
    assert (got.p50, got.p95, got.p99) == tuple(round(v, 1) for v in _quantiles(durations))

    assert [(e.source, e.code, e.count) for e in five_min.errors] == [("run", "tool_failed", 1)]
    tool_calls = sum(1 for e in recent if e.type == "tool_completed")
    assert five_min.tool_calls == tool_calls


async def test_a_tenant_without_runs_gets_empty_figures(analytics: ChdbStore, new_story: Any) -> None:
    view = await SlaFigures(analytics).summary(SlaSummary(tenant_id=new_story().tenant_id))
    assert [w.window_s for w in view.windows] == [300, 3600, 86_400]
    for window in view.windows:
        assert window.runs == 0 and window.errors == []
        assert window.time_to_first_event_ms.count == 0 and window.time_to_first_event_ms.p50 is None
