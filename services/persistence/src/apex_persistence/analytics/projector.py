"""The ClickHouse projection of the event stream.

Exactly-once argument: ``events`` is a ReplacingMergeTree keyed by (tenant, event id)
and every read uses FINAL, so a row inserted twice (redelivery, a crash between insert
and ack, a replay) is one row. The checkpoint row is written after the events; losing
it only means the batch comes again and replaces itself. An erased thread or user is
recorded in ``erased_threads`` / ``erased_users`` first, its rows deleted, and later
deliveries of its events are dropped before insertion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.rows import ch_time, event_row
from apex_persistence.projection.delivery import Delivery, Projected, decode, last_seq
from apex_persistence.projection.erasure import Erasure, first_per_target

_ERASED = """
    SELECT 'thread' AS kind, tenant_id, thread_id AS id FROM $db.erased_threads FINAL
    WHERE tenant_id IN {tenants:Array(String)} AND thread_id IN {threads:Array(String)}
    UNION ALL
    SELECT 'user' AS kind, tenant_id, user_id AS id FROM $db.erased_users FINAL
    WHERE tenant_id IN {tenants:Array(String)} AND user_id IN {users:Array(String)}
"""
_ERASE = {
    "thread": "DELETE FROM $db.events WHERE tenant_id = {tenant:String} AND thread_id = {id:String}",
    "user": "DELETE FROM $db.events WHERE tenant_id = {tenant:String} AND user_id = {id:String}",
}
_POSITION = (
    "SELECT max(last_seq) AS last_seq FROM $db.projection_checkpoints FINAL WHERE name = {name:String}"
)


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
        decoded = decode(batch)
        found = first_per_target(decoded.erasures)
        await self.record(found)
        live = await self._without_erased(decoded.events)
        await self.store.insert("events", [event_row(p) for p in live])
        for erasure in found:
            key = erasure.thread_id if erasure.kind == "thread" else erasure.user_id
            await self.store.command(_ERASE[erasure.kind], {"tenant": erasure.tenant_id, "id": key})
        await self.store.insert(
            "projection_checkpoints",
            [{"name": self.name, "last_seq": last_seq(batch), "updated_at": ch_time(datetime.now(UTC))}],
        )

    async def record(self, found: Sequence[Erasure]) -> None:
        """Records tombstones (before any insert: a later event of the subject is dropped)."""
        threads = [_tombstone(e, "thread_id", e.thread_id) for e in found if e.kind == "thread"]
        users = [_tombstone(e, "user_id", e.user_id) for e in found if e.kind == "user"]
        await self.store.insert("erased_threads", threads)
        await self.store.insert("erased_users", users)

    async def _without_erased(self, projected: list[Projected]) -> list[Projected]:
        if not projected:
            return []
        rows = await self.store.select(
            _ERASED,
            {
                "tenants": sorted({p.event.tenant_id for p in projected}),
                "threads": sorted({p.event.thread_id for p in projected}),
                "users": sorted({p.event.user_id for p in projected}),
            },
        )
        erased = {(row["kind"], row["tenant_id"], row["id"]) for row in rows}
        return [
            p
            for p in projected
            if ("thread", p.event.tenant_id, p.event.thread_id) not in erased
            and ("user", p.event.tenant_id, p.event.user_id) not in erased
        ]


def _tombstone(erasure: Erasure, column: str, value: str | None) -> dict[str, object]:
    return {
        "tenant_id": erasure.tenant_id,
        column: value,
        "seq": erasure.seq,
        "erased_at": ch_time(erasure.at),
    }
