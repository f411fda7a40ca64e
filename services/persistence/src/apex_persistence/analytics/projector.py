"""The ClickHouse projection of the event stream.

Exactly-once argument: ``events`` is a ReplacingMergeTree keyed by (tenant, event id)
and every read uses FINAL, so a row inserted twice (redelivery, a crash between insert
and ack, a replay) is one row. The checkpoint row is written after the events; losing
it only means the batch comes again and replaces itself. An erased thread or user is
recorded in ``erased_threads`` / ``erased_users`` first (the tombstone's seq and the runs
it names), the rows it covers deleted, and later deliveries of covered events dropped
before insertion.

With ``versions``, the tombstones a batch is checked against come from memory: every
tombstone, read once per version of ``erasures`` (bumped after each recording, by any
replica, and after a rebuild's swap; ``analytics/versions.py``). A batch then costs one
leader get on the bus instead of a ClickHouse query. Beyond ``MAX_KEPT_TOMBSTONES``, or
when the version cannot be read, each batch asks for its own targets' tombstones.

With ``checkpoint_every_s``, the checkpoint row is written with the first batch after
that long since the last one, and by ``flush`` (the runner's, when the log goes quiet
and when it stops following); the batches between only insert their events. Every
insert makes a part, so a one-row checkpoint after every batch cost a tenth of the
projector's CPU (``docs/persistence.md``). A checkpoint that lags only means more of the
log is applied again after a crash, which the table absorbs; it is never ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from apex_contracts import Unavailable
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.rows import ch_time, event_row
from apex_persistence.analytics.versions import ERASURES, Versions, version_or_none
from apex_persistence.projection.delivery import Delivery, Projected, decode, last_seq
from apex_persistence.projection.erasure import Erasure, per_target

_ERASED = """
    SELECT 'thread' AS kind, tenant_id, thread_id AS id, seq, runs FROM $db.erased_threads FINAL
    WHERE tenant_id IN {tenants:Array(String)} AND thread_id IN {threads:Array(String)}
    UNION ALL
    SELECT 'user' AS kind, tenant_id, user_id AS id, seq, runs FROM $db.erased_users FINAL
    WHERE tenant_id IN {tenants:Array(String)} AND user_id IN {users:Array(String)}
"""
# What a tombstone covers: the events before it and the later ones of the runs it names.
_ERASE = {
    "thread": "DELETE FROM $db.events WHERE tenant_id = {tenant:String} AND thread_id = {id:String}"
    " AND user_id = {user:String} AND (seq <= {seq:UInt64} OR has({runs:Array(String)}, ifNull(run_id, '')))",
    "user": "DELETE FROM $db.events WHERE tenant_id = {tenant:String} AND user_id = {id:String}"
    " AND (seq <= {seq:UInt64} OR has({runs:Array(String)}, ifNull(run_id, '')))",
}
_ALL_ERASED = """
    SELECT * FROM (
        SELECT 'thread' AS kind, tenant_id, thread_id AS id, seq, runs FROM $db.erased_threads FINAL
        UNION ALL
        SELECT 'user' AS kind, tenant_id, user_id AS id, seq, runs FROM $db.erased_users FINAL
    ) LIMIT {limit:UInt64}
"""
MAX_KEPT_TOMBSTONES: Final = 100_000
# (kind, tenant, thread or user) -> how far its tombstones reach: the seq, and the runs named
Reach = dict[tuple[str, str, str], tuple[int, frozenset[str]]]
_POSITION = (
    "SELECT max(last_seq) AS last_seq FROM $db.projection_checkpoints FINAL WHERE name = {name:String}"
)


class ClickHouseProjection:
    def __init__(
        self,
        store: AnalyticsStore,
        name: str = "clickhouse",
        *,
        versions: Versions | None = None,
        checkpoint_every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self.versions = versions
        self.checkpoint_every_s = checkpoint_every_s
        self.clock = clock
        self._checkpointed_at: float | None = None
        self._unsaved = 0  # the highest seq applied and not checkpointed yet; 0 when none
        # a recording whose version the bus did not take fails the batch (redelivered)
        self.failures: tuple[type[BaseException], ...] = (
            (*store.failures, Unavailable) if versions else store.failures
        )
        self._kept: tuple[int, Reach | None] | None = None  # (version, every tombstone or None: too many)

    async def position(self) -> int:
        rows = await self.store.select(_POSITION, {"name": self.name})
        return int(rows[0]["last_seq"] or 0) if rows else 0

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        decoded = decode(batch)
        found = per_target(decoded.erasures)
        await self.record(found)
        live = await self._without_erased(decoded.events)
        await self.store.insert("events", [event_row(p) for p in live])
        for erasure in found:
            key = erasure.thread_id if erasure.kind == "thread" else erasure.user_id
            await self.store.command(
                _ERASE[erasure.kind],
                {
                    "tenant": erasure.tenant_id,
                    "id": key,
                    "user": erasure.user_id,
                    "seq": erasure.seq,
                    "runs": sorted(erasure.runs),
                },
            )
        self._unsaved = max(self._unsaved, last_seq(batch))
        due = self._checkpointed_at is None or self.clock() - self._checkpointed_at >= self.checkpoint_every_s
        if due:
            await self.flush()

    async def flush(self) -> None:
        """Writes the checkpoint that batches applied since the last one left unsaved."""
        if not self._unsaved:
            return
        at = self.clock()
        await self.store.insert(
            "projection_checkpoints",
            [{"name": self.name, "last_seq": self._unsaved, "updated_at": ch_time(datetime.now(UTC))}],
        )
        self._checkpointed_at, self._unsaved = at, 0

    async def record(self, found: Sequence[Erasure]) -> None:
        """Records tombstones (before any insert: a covered event is dropped), each merged
        with the one already recorded for its target (the furthest seq, every run named)."""
        found = await self._merged(found)
        threads = [_tombstone(e, "thread_id", e.thread_id) for e in found if e.kind == "thread"]
        users = [_tombstone(e, "user_id", e.user_id) for e in found if e.kind == "user"]
        await self.store.insert("erased_threads", threads)
        await self.store.insert("erased_users", users)
        if found and self.versions is not None:
            await self.versions.bump(ERASURES)

    async def _merged(self, found: Sequence[Erasure]) -> list[Erasure]:
        if not found:
            return []
        rows = await self.store.select(
            _ERASED,
            {
                "tenants": sorted({e.tenant_id for e in found}),
                "threads": sorted({e.thread_id for e in found if e.thread_id}),
                "users": sorted({e.user_id for e in found if e.kind == "user"}),
            },
        )
        recorded = {
            (r["kind"], r["tenant_id"], r["id"]): (int(r["seq"]), frozenset(r["runs"] or ())) for r in rows
        }
        merged = []
        for erasure in found:
            seq, runs = recorded.get(
                (erasure.kind, erasure.tenant_id, erasure.thread_id or erasure.user_id), (0, frozenset())
            )
            merged.append(replace(erasure, seq=max(seq, erasure.seq), runs=erasure.runs | runs))
        return merged

    async def _without_erased(self, projected: list[Projected]) -> list[Projected]:
        if not projected:
            return []
        reach = await self._reach(projected)
        if not reach:
            return projected

        def covered(p: Projected) -> bool:
            for key in (
                ("thread", p.event.tenant_id, p.event.thread_id),
                ("user", p.event.tenant_id, p.event.user_id),
            ):
                seq, runs = reach.get(key, (0, frozenset()))
                if p.seq <= seq or (p.event.run_id is not None and p.event.run_id in runs):
                    return True
            return False

        return [p for p in projected if not covered(p)]

    async def _reach(self, projected: list[Projected]) -> Reach:
        """The tombstones that may cover the events: every one, as kept for the current
        version of ``erasures``, else those of the events' targets, read now."""
        version = await version_or_none(self.versions, ERASURES)
        if version is not None:
            if self._kept is None or self._kept[0] != version:
                rows = await self.store.select(_ALL_ERASED, {"limit": MAX_KEPT_TOMBSTONES + 1})
                self._kept = (version, _reach(rows) if len(rows) <= MAX_KEPT_TOMBSTONES else None)
            if self._kept[1] is not None:
                return self._kept[1]
        rows = await self.store.select(
            _ERASED,
            {
                "tenants": sorted({p.event.tenant_id for p in projected}),
                "threads": sorted({p.event.thread_id for p in projected}),
                "users": sorted({p.event.user_id for p in projected}),
            },
        )
        return _reach(rows)


def _reach(rows: Iterable[dict[str, Any]]) -> Reach:
    reach: Reach = {}
    for row in rows:  # a later tombstone of the same target reaches further
        key = (row["kind"], row["tenant_id"], row["id"])
        seq, runs = reach.get(key, (0, frozenset()))
        reach[key] = (max(seq, int(row["seq"])), runs | frozenset(row["runs"] or ()))
    return reach


def _tombstone(erasure: Erasure, column: str, value: str | None) -> dict[str, object]:
    return {
        "tenant_id": erasure.tenant_id,
        column: value,
        "seq": erasure.seq,
        "erased_at": ch_time(erasure.at),
        "runs": sorted(erasure.runs),
    }
