"""The contract of the user run slots (``apex_orchestrator.admission.UserSlots``: each
user's running and queued runs, changed by compare-and-set), written once and run
against each store by subclassing ``RunSlotsContract`` (``test_run_slots_contract.py``:
the NATS key-value bucket ``apex_user_runs``).

A subclass provides ``slot_stores``: a factory of stores over the same records, one per
orchestrator replica. The properties:

- a user's runs are admitted up to the limit, then queued in order (``enqueue``) or
  refused (``reject``); asking again gets the same answer (a redelivered command);
- replicas deciding at once never both take the last slot;
- a released slot goes to the head of the queue, and only to it;
- releasing a run that holds nothing changes nothing; entries of runs that ended
  without releasing are dropped by whoever finds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from apex_contracts import new_id
from apex_orchestrator.admission import Admitted, DoubleTexting, Queued, Rejected, Slot, UserSlots

SlotStores = Callable[[], UserSlots]


def slot() -> Slot:
    return Slot(run_id=new_id("run"), thread_id=new_id("thr"))


def user_key() -> str:
    return UserSlots.key(new_id("ten"), new_id("usr"))


class RunSlotsContract:
    """Subclass per store and define the ``slot_stores`` fixture."""

    @pytest.fixture
    def slot_stores(self) -> SlotStores:
        raise NotImplementedError("a RunSlotsContract subclass defines the slot_stores fixture")

    async def test_runs_are_admitted_up_to_the_limit_then_queued_in_order(
        self, slot_stores: SlotStores
    ) -> None:
        slots, key = slot_stores(), user_key()
        first, second, third, fourth = slot(), slot(), slot(), slot()
        assert await slots.claim(key, first, 2, DoubleTexting.ENQUEUE) == Admitted()
        assert await slots.claim(key, second, 2, DoubleTexting.ENQUEUE) == Admitted()
        assert await slots.claim(key, third, 2, DoubleTexting.ENQUEUE) == Queued(
            (first, second), DoubleTexting.ENQUEUE
        )
        assert await slots.claim(key, fourth, 2, DoubleTexting.ENQUEUE) == Queued(
            (first, second, third), DoubleTexting.ENQUEUE
        )
        # A redelivered command asks again and gets the same answer, holding one place.
        assert await slots.claim(key, first, 2, DoubleTexting.ENQUEUE) == Admitted()
        assert await slots.claim(key, third, 2, DoubleTexting.ENQUEUE) == Queued(
            (first, second), DoubleTexting.ENQUEUE
        )
        other = user_key()  # another user is not limited by this one's runs
        assert await slots.claim(other, slot(), 1, DoubleTexting.REJECT) == Admitted()

    async def test_a_run_beyond_the_limit_is_refused_under_reject(self, slot_stores: SlotStores) -> None:
        slots, key = slot_stores(), user_key()
        running = slot()
        assert await slots.claim(key, running, 1, DoubleTexting.REJECT) == Admitted()
        assert await slots.claim(key, slot(), 1, DoubleTexting.REJECT) == Rejected((running,))
        await slots.release(key, running.run_id)
        assert await slots.claim(key, slot(), 1, DoubleTexting.REJECT) == Admitted()

    async def test_replicas_deciding_at_once_never_both_take_the_last_slot(
        self, slot_stores: SlotStores
    ) -> None:
        key = user_key()
        replicas = [slot_stores() for _ in range(4)]
        runs = [slot() for _ in range(12)]
        decisions = await asyncio.gather(
            *(
                replicas[n % len(replicas)].claim(key, run, 2, DoubleTexting.ENQUEUE)
                for n, run in enumerate(runs)
            )
        )
        assert sum(isinstance(d, Admitted) for d in decisions) == 2
        queued = [d for d in decisions if isinstance(d, Queued)]
        assert len(queued) == 10
        assert sorted(len(d.ahead) for d in queued) == list(range(2, 12))  # one place each, in an order

    async def test_a_released_slot_goes_to_the_head_of_the_queue_only(self, slot_stores: SlotStores) -> None:
        slots, key = slot_stores(), user_key()
        running, head, behind = slot(), slot(), slot()
        await slots.claim(key, running, 1, DoubleTexting.ENQUEUE)
        await slots.claim(key, head, 1, DoubleTexting.ENQUEUE)
        await slots.claim(key, behind, 1, DoubleTexting.ENQUEUE)
        assert not await slots.promote(key, head.run_id, 1)  # no slot free yet
        await slots.release(key, running.run_id)
        assert not await slots.promote(key, behind.run_id, 1)  # not its turn
        assert await slots.promote(key, head.run_id, 1)
        assert await slots.promote(key, head.run_id, 1)  # asked again: it runs
        assert not await slots.promote(key, behind.run_id, 1)
        await slots.release(key, head.run_id)
        assert await slots.promote(key, behind.run_id, 1)

    async def test_releasing_nothing_changes_nothing_and_ended_runs_are_forgotten(
        self, slot_stores: SlotStores
    ) -> None:
        slots, key = slot_stores(), user_key()
        kept, ended, waiting = slot(), slot(), slot()
        await slots.release(key, new_id("run"))  # a run that never held a place
        await slots.claim(key, kept, 2, DoubleTexting.ENQUEUE)
        await slots.claim(key, ended, 2, DoubleTexting.ENQUEUE)
        await slots.release(key, new_id("run"))
        await slots.release(key, ended.run_id)
        await slots.release(key, ended.run_id)  # twice: still one release
        assert await slots.claim(key, waiting, 2, DoubleTexting.ENQUEUE) == Admitted()
        assert await slots.claim(key, slot(), 2, DoubleTexting.REJECT) == Rejected((kept, waiting))

        async def has_ended(s: Slot) -> bool:  # the log says the kept run ended meanwhile
            return s.run_id == kept.run_id

        assert await slots.forget_ended(key, has_ended, keep=waiting.run_id) == 1
        assert await slots.claim(key, slot(), 2, DoubleTexting.ENQUEUE) == Admitted()

    async def test_a_replica_acting_on_the_record_it_last_saw_loses_nothing_another_changed(
        self, slot_stores: SlotStores
    ) -> None:
        # each replica starts a change from the record it last read or wrote: when another
        # replica changed it since, the change is refused and made again on a fresh read
        a, b, witness, key = slot_stores(), slot_stores(), slot_stores(), user_key()
        first, second, third = slot(), slot(), slot()
        assert await a.claim(key, first, 3, DoubleTexting.ENQUEUE) == Admitted()
        assert await b.claim(key, second, 3, DoubleTexting.ENQUEUE) == Admitted()
        await a.release(key, first.run_id)  # a's record (first only) is stale
        assert await witness.claim(key, slot(), 1, DoubleTexting.REJECT) == Rejected((second,))
        # a's record now says nothing runs; b admits a third run meanwhile
        assert await b.claim(key, third, 3, DoubleTexting.ENQUEUE) == Admitted()
        await a.release(key, third.run_id)  # "nothing to change" is not believed from memory
        await b.release(key, first.run_id)  # gone from b's record too: a read confirms it
        assert await witness.claim(key, slot(), 1, DoubleTexting.REJECT) == Rejected((second,))
