"""Per-user concurrency decisions, on the record of a user's runs (pure)."""

from __future__ import annotations

from apex_contracts import new_id
from apex_contracts.streams import KV_USER_RUNS
from apex_orchestrator.admission import (
    Admitted,
    DoubleTexting,
    Queued,
    Rejected,
    Slot,
    UserRuns,
    UserSlots,
    decide,
    promote,
    release,
)
from apex_runtime import CircuitBreaker, KvBucket, KvEntry
from apex_runtime.memory import MemoryBus

THREAD = new_id("thr")


def slot() -> Slot:
    return Slot(run_id=new_id("run"), thread_id=THREAD)


def test_a_run_under_the_limit_starts_at_once() -> None:
    first = slot()
    record, answer = decide(UserRuns(), first, 2, DoubleTexting.ENQUEUE)
    assert answer == Admitted() and record.active == (first,)


def test_enqueue_waits_in_order_and_starts_when_a_slot_frees() -> None:
    first, second, third = slot(), slot(), slot()
    record, _ = decide(UserRuns(), first, 1, DoubleTexting.ENQUEUE)
    record, answer = decide(record, second, 1, DoubleTexting.ENQUEUE)
    assert answer == Queued(ahead=(first,), policy=DoubleTexting.ENQUEUE)
    record, answer = decide(record, third, 1, DoubleTexting.ENQUEUE)
    assert isinstance(answer, Queued) and answer.ahead == (first, second) and answer.victims == ()
    assert promote(record, second.run_id, 1) == (record, False), "the slot is still taken"
    record, _ = release(record, first.run_id)
    assert promote(record, third.run_id, 1)[1] is False, "not its turn: second is ahead"
    record, started = promote(record, second.run_id, 1)
    assert started and record.active == (second,) and record.queued == (third,)


def test_reject_leaves_the_record_alone() -> None:
    first, second = slot(), slot()
    record, _ = decide(UserRuns(), first, 1, DoubleTexting.REJECT)
    after, answer = decide(record, second, 1, DoubleTexting.REJECT)
    assert answer == Rejected(running=(first,)) and after == record


def test_interrupt_names_every_earlier_run_as_a_victim() -> None:
    first, second, third = slot(), slot(), slot()
    record, _ = decide(UserRuns(), first, 1, DoubleTexting.INTERRUPT)
    record, answer = decide(record, second, 1, DoubleTexting.INTERRUPT)
    assert answer == Queued(ahead=(first,), policy=DoubleTexting.INTERRUPT, victims=(first,))
    record, answer = decide(record, third, 1, DoubleTexting.INTERRUPT)
    assert isinstance(answer, Queued) and answer.victims == (first, second)


def test_asking_again_gets_the_same_answer() -> None:
    first, second = slot(), slot()
    record, _ = decide(UserRuns(), first, 1, DoubleTexting.ENQUEUE)
    record, queued = decide(record, second, 1, DoubleTexting.ENQUEUE)
    assert decide(record, second, 1, DoubleTexting.ENQUEUE) == (record, queued)
    assert decide(record, first, 1, DoubleTexting.ENQUEUE) == (record, Admitted())


def test_release_of_a_run_that_holds_nothing_changes_nothing() -> None:
    record, _ = decide(UserRuns(), slot(), 1, DoubleTexting.ENQUEUE)
    assert release(record, new_id("run"))[0] == record


class CountingBucket:
    """A key-value bucket (``MemoryBus``'s), counting reads."""

    def __init__(self, inner: KvBucket) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def get(self, key: str) -> KvEntry | None:
        self.reads += 1
        return await self.inner.get(key)


async def test_a_run_admitted_and_released_by_one_replica_costs_one_read() -> None:
    bus = MemoryBus()
    try:
        kv = CountingBucket(await bus.bucket(KV_USER_RUNS))
        slots = UserSlots(kv, CircuitBreaker("user_runs_kv"))  # type: ignore[arg-type]
        key, run = UserSlots.key(new_id("ten"), new_id("usr")), slot()
        assert await slots.claim(key, run, 2, DoubleTexting.ENQUEUE) == Admitted()
        await slots.release(key, run.run_id)  # from the record its own claim wrote
        assert kv.reads == 1
        await slots.release(key, run.run_id)  # nothing to change: believed from a read only
        assert kv.reads == 2
    finally:
        await bus.close()
