"""Per-user concurrency decisions, on the record of a user's runs (pure)."""

from __future__ import annotations

from apex_contracts import new_id
from apex_orchestrator.admission import (
    Admitted,
    DoubleTexting,
    Queued,
    Rejected,
    Slot,
    UserRuns,
    decide,
    promote,
    release,
)

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
