"""A ledger write the bus did not confirm may still land (the client sends what it
buffered once it reconnects). The claims protocol must then recognise its own write:
an executor whose renewal or outcome landed late still holds the call, and only another
executor's record means the call was taken over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.streams import KV_TOOL_LEDGER
from apex_runtime.memory import MemoryBus
from apex_tools.claims import Held, LeaseLost, acquire, finish, give_back, leased
from apex_tools.ledger import Claim, KvLedger, LedgerEntry, Record

OUTCOME = LedgerEntry(status="ok", tool="echo", duration_ms=3, result={"word": "HI", "at": 1.5})


class LateLedger(KvLedger):
    """Applies the next ``unconfirmed`` replaces, then answers as if the bus timed out."""

    unconfirmed = 0

    async def replace(self, call_id: str, record: Record, revision: int) -> int:
        landed = await super().replace(call_id, record, revision)
        if self.unconfirmed:
            self.unconfirmed -= 1
            raise Unavailable(
                "The tool ledger did not answer: TimeoutError()", code=ErrorCode.STORE_UNAVAILABLE
            )
        return landed


@pytest.fixture
async def ledger() -> AsyncIterator[LateLedger]:
    bus = MemoryBus()
    yield LateLedger(await bus.bucket(KV_TOOL_LEDGER))
    await bus.close()


async def _held(ledger: LateLedger, lease_s: float = 20.0) -> Held:
    got = await acquire(ledger, "call_1", "tools-a:1", lease_s)
    assert isinstance(got, Held)
    return got


async def test_an_outcome_written_after_a_late_renewal_of_its_own_holds(ledger: LateLedger) -> None:
    held = await _held(ledger)
    renewed = held.claim.model_copy(update={"attempt": held.claim.attempt})
    await ledger.replace(held.call_id, renewed, held.revision)  # landed; `held` never heard
    revision = await finish(ledger, held, OUTCOME)
    assert await ledger.read(held.call_id) == (OUTCOME, revision)


async def test_an_outcome_whose_own_write_landed_unconfirmed_is_not_dropped(ledger: LateLedger) -> None:
    held = await _held(ledger)
    ledger.unconfirmed = 1
    with pytest.raises(Unavailable):
        await finish(ledger, held, OUTCOME)
    revision = await finish(ledger, held, OUTCOME)  # asked again: its own outcome is there
    assert await ledger.read(held.call_id) == (OUTCOME, revision)


async def test_a_body_goes_on_when_its_renewal_landed_unconfirmed(ledger: LateLedger) -> None:
    held = await _held(ledger, lease_s=0.08)
    ledger.unconfirmed = 1  # the first renewal lands but times out; the next finds it

    async def body() -> str:
        await asyncio.sleep(0.2)
        return "done"

    assert await leased(ledger, held, body()) == "done"
    revision = await finish(ledger, held, OUTCOME)
    assert await ledger.read(held.call_id) == (OUTCOME, revision)


async def test_a_claim_given_back_after_a_late_renewal_is_released(ledger: LateLedger) -> None:
    held = await _held(ledger)
    await ledger.replace(held.call_id, held.claim.model_copy(), held.revision)  # landed late
    await give_back(ledger, held)
    assert await ledger.read(held.call_id) is None


async def test_another_executors_claim_is_still_a_takeover(ledger: LateLedger) -> None:
    held = await _held(ledger)
    other = Claim(claimant="tools-b:2", lease_s=20.0, attempt=2)
    await ledger.replace(held.call_id, other, held.revision)
    with pytest.raises(LeaseLost):
        await finish(ledger, held, OUTCOME)
    found = await ledger.read(held.call_id)
    assert found is not None and found[0] == other
