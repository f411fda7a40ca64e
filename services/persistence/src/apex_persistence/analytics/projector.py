"""The ClickHouse projection of the event stream.

Exactly-once argument: ``events`` is a ReplacingMergeTree keyed by (tenant, event id)
and every read uses FINAL, so a row inserted twice (redelivery, a crash between insert
and ack, a replay) is one row. The checkpoint row is written after the events; losing
it only means the batch comes again and replaces itself. An erased thread is recorded
in ``erased_threads`` first, its rows deleted, and later deliveries of its events are
dropped before insertion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from apex_contracts import ThreadDeleted
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.rows import ch_time, event_row
from apex_persistence.projection.delivery import Delivery, Projected, decode_events, last_seq

_ERASED = """
    SELECT thread_id FROM $db.erased_threads FINAL
    WHERE tenant_id IN {tenants:Array(String)} AND thread_id IN {threads:Array(String)}
"""
_ERASE = "DELETE FROM $db.events WHERE tenant_id = {tenant:String} AND thread_id = {thread:String}"
_POSITION = "SELECT max(last_seq) AS last_seq FROM $db.projection_checkpoints FINAL WHERE name = {name:String}"


class ClickHouseProjection:
    def __init__(self, store: AnalyticsStore, name: str = "clickhouse") -> None:
        self.store = store
        self.name = name
        self.failures = store.failures

    async def position(self) -> int:
        rows = await self.store.select(_POSITION, {"name": self.name})
        return int(rows[0]["last_seq"] or 0) if rows else 0

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        projected = decode_events(batch)
        live = await self._without_erased(projected)
        await self.store.insert("events", [event_row(p) for p in live])
        for p in live:
            if isinstance(p.event, ThreadDeleted) and p.event.data.erase:
                await self._erase(p)
        await self.store.insert("projection_checkpoints", [
            {"name": self.name, "last_seq": last_seq(batch), "updated_at": ch_time(datetime.now(UTC))}
        ])

    async def _without_erased(self, projected: list[Projected]) -> list[Projected]:
        if not projected:
            return []
        rows = await self.store.select(_ERASED, {
            "tenants": sorted({p.event.tenant_id for p in projected}),
            "threads": sorted({p.event.thread_id for p in projected}),
        })
        erased = {row["thread_id"] for row in rows}
        return [p for p in projected if p.event.thread_id not in erased]

    async def _erase(self, projected: Projected) -> None:
        event = projected.event
        await self.store.insert("erased_threads", [{
            "tenant_id": event.tenant_id, "thread_id": event.thread_id, "seq": projected.seq,
            "erased_at": ch_time(event.occurred_at),
        }])
        await self.store.command(_ERASE, {"tenant": event.tenant_id, "thread": event.thread_id})
