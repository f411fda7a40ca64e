"""Finishes every erasure once all three projections have applied its tombstone (their
checkpoints are past its sequence): purges what it covers from the
log (``apex.evt.<tenant>.<user>.<thread>``, or every subject of the user, up to the
tombstone, and the later events of the runs it names), deletes an erased user's entries
from the audit stream, and audits the erasure as ``data.erased`` on
``apex.audit.<tenant>``. Each step is idempotent and recorded in the ledger, so a
crash in between only repeats it; the audit entry's id is derived from the tombstone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final

import orjson
from pydantic import ValidationError

from apex_contracts import Unavailable
from apex_contracts.audit import AuditEntry, audit_subject
from apex_contracts.dedupe_ids import erasure_audit_id
from apex_contracts.streams import APEX_AUDIT, APEX_EVT
from apex_persistence.postgres.db import PG_FAILURES
from apex_persistence.postgres.erasures import ErasureLedger
from apex_persistence.projection.erasure import Erasure
from apex_persistence.projection.ports import Projection
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus, CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)
# What postpones a round to the next one; one name, because mypy cannot type an unpacking
# inside ``except (...)``.
_ROUND_POSTPONED: Final[tuple[type[BaseException], ...]] = (
    CircuitOpen,
    Unavailable,
    *PG_FAILURES,
    *TRANSIENT_NATS_ERRORS,
)
PROJECTORS: Final = ("postgres", "redis", "clickhouse")
STORES_ERASED: Final = ("postgres", "redis", "clickhouse", "events_archive", "event_log")


def erasure_audit(erasure: Erasure, removed_audit_entries: int = 0) -> AuditEntry:
    return AuditEntry(
        id=erasure_audit_id(erasure.event_id),
        tenant_id=erasure.tenant_id,
        action="data.erased",
        outcome="success",
        actor_user_id=erasure.requested_by,
        service="persistence",
        target=erasure.target,
        details={
            "kind": erasure.kind,
            "tombstone": erasure.event_id,
            "tombstone_seq": erasure.seq,
            "requested_at": erasure.at.isoformat(),
            "stores": list(STORES_ERASED),
            "audit_entries_removed": removed_audit_entries,
        },
    )


class Eraser:
    def __init__(
        self,
        bus: Bus,
        ledger: ErasureLedger,
        breaker: CircuitBreaker,
        projections: Sequence[Projection],
        *,
        every_s: float = 1.0,
    ) -> None:
        self.bus = bus
        self.ledger = ledger
        self.breaker = breaker
        self.projections = projections
        self.every_s = every_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except _ROUND_POSTPONED as exc:
                log.warning("eraser: a store or the bus is unavailable, next round: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def step(self) -> int:
        """Finishes what can be finished now; returns how many erasures it completed."""
        pending = await self.breaker.call(self.ledger.pending, PG_FAILURES)
        if not pending:
            return 0
        floor = await self.applied_everywhere()
        done = 0
        for erasure, purged, audited in pending:
            if erasure.seq > floor:
                continue
            removed = 0
            if not purged:
                removed = await self.purge(erasure)
                await self.ledger.mark(erasure, "purged_at")
            if not audited:
                await self.audit(erasure, removed)
                await self.ledger.mark(erasure, "audited_at")
            done += 1
        return done

    async def applied_everywhere(self) -> int:
        """The highest sequence every projection has applied with all before it (their
        checkpoints: a projector applies the log in order); 0 while a store cannot say."""
        floors = []
        for projection in self.projections:
            try:
                floors.append(await projection.position())
            except projection.failures as exc:
                log.warning("eraser: the %s checkpoint cannot be read, next round: %r", projection.name, exc)
                return 0
        return min(floors, default=0)

    async def purge(self, erasure: Erasure) -> int:
        """Removes what the erasure covers from the log (the erased subjects up to the
        tombstone, and the later events of the runs it names); returns the audit entries
        removed."""
        await self.bus.purge(APEX_EVT.name, erasure.subject, keep_after=erasure.seq)
        late = await self._remove_late_events(erasure)
        removed = await self._remove_audit_entries(erasure) if erasure.kind == "user" else 0
        log.info(
            "erasure of %s: purged %s up to seq %d and %d later events of its runs (%d audit entries removed)",
            erasure.target,
            erasure.subject,
            erasure.seq,
            late,
            removed,
        )
        return removed

    async def _remove_late_events(self, erasure: Erasure) -> int:
        if not erasure.runs:
            return 0
        doomed = []
        async for seq, data in self.bus.read_subject(erasure.subject, after_seq=erasure.seq):
            try:
                run_id = orjson.loads(data).get("run_id")
            except orjson.JSONDecodeError:
                continue
            if run_id in erasure.runs:
                doomed.append(seq)
        for seq in doomed:
            await self.bus.delete_message(APEX_EVT.name, seq)
        return len(doomed)

    async def _remove_audit_entries(self, erasure: Erasure) -> int:
        doomed: list[int] = []
        async for seq, data in self.bus.read_subject(
            audit_subject(erasure.tenant_id), stream=APEX_AUDIT.name
        ):
            try:
                entry = AuditEntry.model_validate_json(data)
            except ValidationError:
                continue
            if entry.action != "data.erased" and (
                entry.actor_user_id == erasure.user_id or erasure.user_id in (entry.target or "")
            ):
                doomed.append(seq)
        for seq in doomed:
            await self.bus.delete_message(APEX_AUDIT.name, seq)
        return len(doomed)

    async def audit(self, erasure: Erasure, removed: int) -> None:
        entry = erasure_audit(erasure, removed)
        await self.bus.publish_raw(
            audit_subject(entry.tenant_id),
            entry.model_dump_json().encode(),
            {"Nats-Msg-Id": entry.id},
        )
