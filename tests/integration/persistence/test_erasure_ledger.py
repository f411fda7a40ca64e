"""The eraser marks only the tombstone it handled: a later tombstone of the same user,
recorded while the eraser purged the earlier one, stays pending until it is handled."""

from __future__ import annotations

from datetime import UTC, datetime

from apex_contracts import new_id
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.erasures import ErasureLedger, record
from apex_persistence.projection.erasure import Erasure


def tombstone(tenant_id: str, user_id: str, seq: int) -> Erasure:
    return Erasure(
        kind="user",
        tenant_id=tenant_id,
        user_id=user_id,
        thread_id=None,
        seq=seq,
        event_id=new_id("evt"),
        requested_by=user_id,
        at=datetime.now(UTC),
    )


async def state(ledger: ErasureLedger, tenant_id: str) -> dict[int, tuple[bool, bool]]:
    return {
        e.seq: (purged, audited) for e, purged, audited in await ledger.pending() if e.tenant_id == tenant_id
    }


async def test_a_later_tombstone_recorded_meanwhile_stays_pending(pg: Database) -> None:
    ledger = ErasureLedger(pg)
    tenant_id, user_id = new_id("ten"), new_id("usr")
    first, later = tombstone(tenant_id, user_id, 10), tombstone(tenant_id, user_id, 20)
    async with pg.writer() as conn:
        await record(conn, [first])
    assert await state(ledger, tenant_id) == {10: (False, False)}
    async with pg.writer() as conn:  # the user is erased again while the eraser works on the first
        await record(conn, [later])
    await ledger.mark(first, "purged_at")
    await ledger.mark(first, "audited_at")
    assert await state(ledger, tenant_id) == {20: (False, False)}, "the later tombstone is still to purge"
    await ledger.mark(later, "purged_at")
    assert await state(ledger, tenant_id) == {20: (True, False)}
    await ledger.mark(later, "audited_at")
    assert await state(ledger, tenant_id) == {}


async def test_an_earlier_tombstone_does_not_reopen_a_handled_one(pg: Database) -> None:
    ledger = ErasureLedger(pg)
    tenant_id, user_id = new_id("ten"), new_id("usr")
    later = tombstone(tenant_id, user_id, 20)
    async with pg.writer() as conn:
        await record(conn, [later])
    await ledger.mark(later, "purged_at")
    await ledger.mark(later, "audited_at")
    async with pg.writer() as conn:  # a replay delivers an earlier tombstone again
        await record(conn, [tombstone(tenant_id, user_id, 10)])
    assert await state(ledger, tenant_id) == {}
