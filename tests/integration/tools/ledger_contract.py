"""The contract of the tool-call ledger (``apex_tools.ledger.Ledger``) and of the claim
protocol over it (``apex_tools.claims``), written once and run against each ledger by
subclassing ``LedgerContract`` (``test_ledger_contract.py``: the NATS key-value bucket).

A subclass provides the ``tool_ledger`` fixture. The properties:

- claim before run: the first executor to ask gets a claim (attempt 1), and the record
  says who holds it before any body runs;
- a duplicate claim is refused: a second create of the call is ``Taken``; a second
  executor asking while the holder renews its lease waits, and is answered with the
  holder's outcome, never a claim of its own;
- a lease ends: a claim nobody renews for a whole lease is taken over (attempt 2), and
  the executor that lost it can no longer write its outcome;
- compare-and-set: a replace or a release at a revision the record has left is refused
  (replace) or changes nothing (release); a claim given back is claimed again at once.
"""

from __future__ import annotations

import asyncio

import pytest

from apex_contracts import new_id
from apex_tools.claims import Held, LeaseLost, acquire, finish, give_back, leased
from apex_tools.ledger import Claim, Ledger, LedgerEntry, Taken

LEASE_S = 0.6


def outcome(result: int) -> LedgerEntry:
    return LedgerEntry(status="ok", tool="cost_breakdown", duration_ms=5, result={"rows": result})


class LedgerContract:
    """Subclass per ledger and define the ``tool_ledger`` fixture."""

    @pytest.fixture
    def tool_ledger(self) -> Ledger:
        raise NotImplementedError("a LedgerContract subclass defines the tool_ledger fixture")

    async def test_a_call_is_claimed_before_it_runs(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        assert await tool_ledger.read(call_id) is None
        held = await acquire(tool_ledger, call_id, "executor-a", LEASE_S)
        assert isinstance(held, Held) and held.claim.attempt == 1 and not held.taken_over
        found = await tool_ledger.read(call_id)
        assert found is not None
        record, revision = found
        assert isinstance(record, Claim) and record.claimant == "executor-a" and revision == held.revision

        await finish(tool_ledger, held, outcome(3))
        again = await acquire(tool_ledger, call_id, "executor-b", LEASE_S)
        assert again == outcome(3)  # answered from the ledger, not run again

    async def test_a_duplicate_claim_is_refused(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        await tool_ledger.create(call_id, Claim(claimant="executor-a", lease_s=LEASE_S))
        with pytest.raises(Taken):
            await tool_ledger.create(call_id, Claim(claimant="executor-b", lease_s=LEASE_S))
        with pytest.raises(Taken):
            await tool_ledger.create(call_id, outcome(1))

    async def test_a_claim_held_and_renewed_is_waited_for(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        held = await acquire(tool_ledger, call_id, "executor-a", LEASE_S)
        assert isinstance(held, Held)
        waits: list[str] = []

        async def body() -> int:
            await asyncio.sleep(LEASE_S * 3)  # three leases long: only renewals keep it
            return 7

        async def holder() -> None:
            result = await leased(tool_ledger, held, body())
            await finish(tool_ledger, held, outcome(result))

        running = asyncio.create_task(holder())
        answer = await acquire(
            tool_ledger, call_id, "executor-b", LEASE_S, poll_s=0.05, on_wait=lambda: waits.append("b")
        )
        await running
        assert answer == outcome(7) and waits == ["b"]

    async def test_an_unrenewed_claim_is_taken_over_after_its_lease(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        lost = await acquire(tool_ledger, call_id, "executor-a", LEASE_S)
        assert isinstance(lost, Held)  # and executor-a never renews: it was killed
        loop = asyncio.get_running_loop()
        started = loop.time()
        taker = await acquire(tool_ledger, call_id, "executor-b", LEASE_S, poll_s=0.05)
        assert loop.time() - started >= LEASE_S
        assert isinstance(taker, Held) and taker.taken_over and taker.claim.attempt == 2

        with pytest.raises(LeaseLost):
            await finish(tool_ledger, lost, outcome(1))  # the old holder's outcome is dropped
        await finish(tool_ledger, taker, outcome(2))
        found = await tool_ledger.read(call_id)
        assert found is not None and found[0] == outcome(2)

    async def test_writes_at_a_stale_revision_change_nothing(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        first = await tool_ledger.create(call_id, Claim(claimant="executor-a", lease_s=LEASE_S))
        second = await tool_ledger.replace(call_id, Claim(claimant="executor-a", lease_s=LEASE_S), first)
        assert second > first
        with pytest.raises(Taken):
            await tool_ledger.replace(call_id, outcome(1), first)
        await tool_ledger.release(call_id, first)  # moved on: left alone
        found = await tool_ledger.read(call_id)
        assert found is not None and found[1] == second

    async def test_a_claim_given_back_is_claimed_again_at_once(self, tool_ledger: Ledger) -> None:
        call_id = new_id("call")
        held = await acquire(tool_ledger, call_id, "executor-a", LEASE_S)
        assert isinstance(held, Held)
        await give_back(tool_ledger, held)
        again = await asyncio.wait_for(acquire(tool_ledger, call_id, "executor-b", LEASE_S), LEASE_S / 2)
        assert isinstance(again, Held) and again.claim.claimant == "executor-b" and again.claim.attempt == 1
